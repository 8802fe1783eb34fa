"""The lake's errors: what a failed read or write of a lake file raises, and how any error
is said in one line."""

from __future__ import annotations

__all__ = ["LakeError", "LakeReadError", "LakeStopped", "LakeWriteError", "first_line"]


class LakeError(Exception):
    """Base of the lake's errors."""


class LakeWriteError(LakeError):
    """A lake file could not be written (disk full, permissions, ...); the old one stands."""


class LakeReadError(LakeError):
    """An existing lake file could not be read or does not hold ``LAKE_SCHEMA``."""


class LakeStopped(LakeError):
    """A write was asked to stop part-way (the process is shutting down)."""


def first_line(exc: BaseException) -> str:
    """An error in one line: its message's first line, or its type's name if it has none."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
