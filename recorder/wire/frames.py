"""Frames: the WebSocket text messages Yahoo's streamer sends, and their payloads.

Two forms exist on the wire:

- v1 (``wss://streamer.finance.yahoo.com/``): the frame *is* the base64 of one serialized
  ``PricingData``;
- v2 (``/?version=2``): the frame is JSON ``{"type": "pricing", "message": "<base64>"}``.
  Other ``type`` values exist; they carry no tick and are *skipped*, never an error.

:func:`unwrap` turns one frame into its protobuf payload bytes, ``None`` for a skipped
envelope, or raises :class:`FrameError` with a one-line reason. It never hangs: a frame is
rejected on its length before anything parses it.
"""

from __future__ import annotations

import binascii
import json
from typing import Final

MAX_FRAME_CHARS: Final = 1 << 20
"""A real frame is ~100-300 characters; anything above 1 MiB is rejected unread."""

V2_PREFIX: Final = '{"type":"pricing","message":"'
V2_SUFFIX: Final = '"}'


class FrameError(ValueError):
    """A frame that cannot become a tick. ``reason`` is one line a user can act on."""

    def __init__(self, reason: str, index: int = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index

    def at(self, index: int) -> FrameError:
        return FrameError(self.reason, index)


class SkippedFrame(Exception):
    """A well-formed v2 envelope whose ``type`` is not ``pricing`` (``kind`` says which)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def unwrap(frame: str | bytes) -> bytes:
    """The protobuf payload of ``frame``.

    Raises :class:`SkippedFrame` for a non-pricing v2 envelope and :class:`FrameError` for
    anything else that is not a valid frame.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        try:
            frame = bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"binary frame is not UTF-8 (byte {exc.start})") from None
    size = len(frame)
    if size == 0:
        raise FrameError("empty frame")
    if size > MAX_FRAME_CHARS:
        raise FrameError(f"frame of {size} characters exceeds the {MAX_FRAME_CHARS} limit")
    # JSON starts with one of these; none of them is in the base64 alphabet.
    text = _v2_message(frame) if frame[0] in '{["' else frame
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise FrameError(f"invalid base64: {exc}") from None


def _v2_message(frame: str) -> str:
    # Yahoo's envelope is compact JSON with "type" first; slice it without a JSON parse.
    if frame.startswith(V2_PREFIX) and frame.endswith(V2_SUFFIX):
        inner = frame[len(V2_PREFIX) : -len(V2_SUFFIX)]
        if '"' not in inner and "\\" not in inner:
            return inner
    try:
        envelope = json.loads(frame)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise FrameError(f"invalid JSON: {reason}") from None
    if not isinstance(envelope, dict):
        raise FrameError("JSON frame is not an object")
    kind = envelope.get("type")
    if kind != "pricing":
        if isinstance(kind, str):
            raise SkippedFrame(kind)
        raise FrameError("JSON envelope has no string 'type'")
    message = envelope.get("message")
    if not isinstance(message, str):
        raise FrameError("pricing envelope has no string 'message'")
    return message
