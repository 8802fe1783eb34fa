"""Yahoo's wire format: frames in, ticks out, and the market facts the feed implies.

The only part of :mod:`recorder` that :mod:`analytics` may import.
"""
