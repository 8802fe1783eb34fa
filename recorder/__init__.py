"""The recorder owns the wire format (frames, ticks), the journal and the Parquet lake.

It never imports ``analytics``.
"""
