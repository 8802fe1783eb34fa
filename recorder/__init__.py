"""The wire format (:mod:`recorder.wire`) and live capture: feed, journal, ingest, replay.

It imports :mod:`lake` and never ``analytics`` or ``ticklake``.
"""
