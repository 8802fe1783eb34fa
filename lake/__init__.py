"""The data directory on disk: its paths, the Parquet lake and the state files beside it.

The lowest layer: it imports nothing from ``recorder``, ``analytics`` or ``ticklake``.
"""
