"""The lake's errors: what a failed read or write of a lake file raises."""

from __future__ import annotations

__all__ = ["LakeError", "LakeReadError", "LakeStopped", "LakeWriteError"]


class LakeError(Exception):
    """Base of the lake's errors."""


class LakeWriteError(LakeError):
    """A lake file could not be written (disk full, permissions, ...); the old one stands."""


class LakeReadError(LakeError):
    """An existing lake file could not be read or does not hold ``LAKE_SCHEMA``."""


class LakeStopped(LakeError):
    """A write was asked to stop part-way (the process is shutting down)."""
