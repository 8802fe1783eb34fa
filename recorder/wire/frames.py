"""Frames: the WebSocket text messages Yahoo's streamer sends, and their payloads.

Two forms exist on the wire:

- v1 (``wss://streamer.finance.yahoo.com/``): the frame *is* the base64 of one serialized
  ``PricingData``;
- v2 (``/?version=2``): the frame is JSON ``{"type": "pricing", "message": "<base64>"}``.
  Other ``type`` values exist; they carry no tick and are *skipped*, never an error.

:func:`unwrap` turns one frame into its protobuf payload bytes, ``None`` for a skipped
envelope, or raises :class:`FrameError` with a one-line reason. It never hangs: a frame is
rejected on its length before anything parses it.

:func:`unwrap_batch` does the same for many frames at once: frames in the exact compact
envelope (or bare base64) are checked and base64-decoded together with a few bytes and
NumPy operations over the whole batch; every other frame goes through :func:`unwrap`, so
each frame's payload, skip or error is exactly what :func:`unwrap` makes of it.
"""

from __future__ import annotations

import binascii
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

MAX_FRAME_CHARS: Final = 1 << 20
"""A real frame is ~100-300 characters; anything above 1 MiB is rejected unread."""

V2_PREFIX: Final = '{"type":"pricing","message":"'
V2_SUFFIX: Final = '"}'

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
_PREFIX: Final = V2_PREFIX.encode()
_SUFFIX: Final = V2_SUFFIX.encode()
_ENVELOPE: Final = len(_PREFIX) + len(_SUFFIX)
_WORD: Final = 8  # bytes compared at once
_PREFIX_WORDS: Final = [
    (at, int.from_bytes(_PREFIX[at : at + _WORD], "little"))
    for at in sorted({*range(0, len(_PREFIX) - _WORD, _WORD), len(_PREFIX) - _WORD})
]
_B64: Final = np.zeros(256, dtype=np.bool_)  # the standard alphabet, without "="
_B64[
    np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)
] = True
_EQ: Final = ord("=")
_OPEN: Final = ord("{")
_CLOSE: Final = ord("}")
PADDING: Final = 32
"""Zero bytes after the last payload of :class:`Payloads` (a varint read runs past)."""
_PADDING_FRAME: Final = V2_PREFIX + "A" * (PADDING // 3 * 4 + 4) + V2_SUFFIX


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


@dataclass
class Payloads:
    """The payloads of a batch of frames in one buffer: payload ``i`` is
    ``data[starts[i] : starts[i] + lengths[i]]`` and came from ``frames[index[i]]``
    (``index`` ascending). Payloads may have gaps between them; ``data`` ends with at least
    :data:`PADDING` zero bytes, so a reader may run a little past a payload's end."""

    data: bytes
    starts: I64
    lengths: I64
    index: I64
    errors: list[FrameError] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def unwrap_batch(frames: Sequence[str | bytes], *, bulk: bool = True) -> Payloads:
    """What :func:`unwrap` makes of each frame, for a whole batch: payloads, the frames
    skipped (by type) and the errors (each with its frame's index). ``bulk=False`` calls
    :func:`unwrap` on every frame (the reference the bulk path is tested against)."""
    n = len(frames)
    compact = _all_compact(frames) if bulk else None
    if compact is not None:
        return Payloads(*compact, np.arange(n, dtype=np.int64))
    if bulk:
        data, starts, lengths, done = _bulk(frames)
    else:
        data, starts, lengths, done = (
            b"",
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.zeros(n, np.bool_),
        )
    index = np.flatnonzero(done)
    errors: list[FrameError] = []
    skipped: Counter[str] = Counter()
    rest: list[bytes] = []
    rest_index: list[int] = []
    for i in np.flatnonzero(~done).tolist():
        try:
            rest.append(unwrap(frames[i]))
            rest_index.append(i)
        except FrameError as exc:
            errors.append(exc.at(i))
        except SkippedFrame as skip:
            skipped[skip.kind] += 1
    rest_lengths = np.fromiter(map(len, rest), dtype=np.int64, count=len(rest))
    rest_starts = len(data) + np.cumsum(rest_lengths) - rest_lengths
    all_index = np.concatenate([index, np.asarray(rest_index, dtype=np.int64)])
    order = np.argsort(all_index, kind="stable")
    return Payloads(
        b"".join([data, *rest, bytes(PADDING)]),
        np.concatenate([starts[index], rest_starts])[order],
        np.concatenate([lengths[index], rest_lengths])[order],
        all_index[order],
        errors,
        skipped,
    )


def _all_compact(frames: Sequence[str | bytes]) -> tuple[bytes, I64, I64] | None:
    """(data, starts, lengths) of :class:`Payloads` if every frame is a compact v2 pricing
    envelope of canonical base64 within the size limit, else None.

    Checked over the joined frames at once: if each frame starts with ``{`` and ends with
    ``}``, and removing every ``"}{"type":"pricing","message":"`` from the joined text
    leaves one prefix, ``n - 1`` removals, one suffix and base64 between them, then each
    frame is exactly prefix + base64 + suffix (``{`` and ``}`` occur nowhere else).
    """
    n = len(frames)
    if not n:
        return None
    try:  # a last envelope of "A"s: they decode to PADDING zero bytes and more
        encoded = map(str.encode, [*frames, _PADDING_FRAME])  # type: ignore[arg-type]
        raw = bytearray().join(encoded)  # (a non-ASCII frame's UTF-8 is longer than it)
    except TypeError:  # a binary frame
        return None
    lengths = np.fromiter(map(len, frames), dtype=np.int64, count=n)
    if len(raw) != int(lengths.sum()) + len(_PADDING_FRAME):
        return None
    ends = np.cumsum(lengths)
    starts = ends - lengths
    inner = lengths - _ENVELOPE
    if inner.min() < 0 or lengths.max() > MAX_FRAME_CHARS or (inner % 4).any():
        return None
    arr = np.frombuffer(raw, dtype=np.uint8)
    if not ((arr[starts] == _OPEN).all() and (arr[ends - 1] == _CLOSE).all()):
        return None
    body = raw.replace(_SUFFIX + _PREFIX, b"")
    if len(body) != len(raw) - n * _ENVELOPE or not (
        body.startswith(_PREFIX) and body.endswith(_SUFFIX)
    ):
        return None
    inner_starts = np.cumsum(inner) - inner
    pads = _padding(body, inner_starts, inner)
    if pads is None:
        return None
    texts = memoryview(body)[len(_PREFIX) : -len(_SUFFIX)]
    try:
        decoded = binascii.a2b_base64(texts, strict_mode=True)
    except binascii.Error:
        return None
    return decoded, inner_starts // 4 * 3, inner // 4 * 3 - pads


def _padding(body: bytearray, starts: I64, lengths: I64) -> I64 | None:
    """How many ``=`` end each of the base64 texts joined in ``body`` (from offset
    ``len(_PREFIX)``, with no ``=`` outside them), which are replaced by ``A`` so that the
    texts decode as one; None if any ``=`` is elsewhere."""
    arr = np.frombuffer(body, dtype=np.uint8)
    last = starts + lengths - 1 + len(_PREFIX)
    one = (arr[last] == _EQ) & (lengths > 0)
    two = one & (arr[last - 1] == _EQ)
    if body.count(b"=") != one.sum() + two.sum():
        return None
    arr[last[one]] = arr[last[two] - 1] = ord("A")
    pads: I64 = one.astype(np.int64) + two
    return pads


def _bulk(frames: Sequence[str | bytes]) -> tuple[bytes, I64, I64, Mask]:
    """Base64-decode at once the frames of a batch not all compact v2 (a v1 batch, a
    mixed one) that are a compact v2 pricing envelope or bare base64, canonical (no other
    characters, ``=`` only as the last one or two of a whole number of quanta) and within
    the size limit: (decoded bytes, starts, lengths, done); ``done[i]`` is False for a
    frame left to :func:`unwrap`."""
    n = len(frames)
    texts = [f if type(f) is str else "" for f in frames]
    joined = "".join(texts)
    if not joined.isascii():  # then byte offsets are not character offsets
        texts = [f if f.isascii() else "" for f in texts]
        joined = "".join(texts)
    raw = joined.encode("ascii")
    arr = np.frombuffer(raw + bytes(_WORD), dtype=np.uint8)
    words = np.ndarray((len(raw) + 1,), dtype="<u8", buffer=arr, strides=(1,))
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    sized = (lengths > 0) & (lengths <= MAX_FRAME_CHARS)
    first = arr[starts]
    v2 = np.flatnonzero(sized & (first == ord("{")) & (lengths >= _ENVELOPE))
    compact = np.ones(v2.size, dtype=np.bool_)
    for at, expected in _PREFIX_WORDS:
        compact &= words[starts[v2] + at] == np.uint64(expected)
    for back, byte in zip(range(len(_SUFFIX), 0, -1), _SUFFIX, strict=True):
        compact &= arr[ends[v2] - back] == byte
    is_v2 = np.zeros(n, dtype=np.bool_)
    is_v2[v2[compact]] = True
    inner_starts = np.where(is_v2, starts + len(_PREFIX), starts)
    inner_lengths = np.where(is_v2, lengths - _ENVELOPE, lengths)
    done = (is_v2 | (sized & _B64[first])) & (inner_lengths % 4 == 0)
    while True:
        rows = np.flatnonzero(done)
        body = _inners(raw, inner_starts[rows], inner_lengths[rows])
        body_starts = np.cumsum(inner_lengths[rows]) - inner_lengths[rows]
        decoded, pads, bad = _decode(body, body_starts, inner_lengths[rows])
        if not bad.any():
            break
        done[rows[bad]] = False
    out_starts = np.zeros(n, dtype=np.int64)
    out_lengths = np.zeros(n, dtype=np.int64)
    out_starts[rows] = body_starts // 4 * 3
    out_lengths[rows] = inner_lengths[rows] // 4 * 3 - pads
    return decoded, out_starts, out_lengths, done


def _inners(raw: bytes, starts: I64, lengths: I64) -> bytes:
    """The texts ``raw[starts[i] : starts[i] + lengths[i]]`` (in order, not overlapping),
    joined."""
    if not int(lengths.sum()):
        return b""
    ends = starts + lengths
    if starts.size and starts[0] == 0 and ends[-1] == len(raw) and (starts[1:] == ends[:-1]).all():
        return raw  # every frame, all bare base64
    edges = np.zeros(len(raw) + 1, dtype=np.int8)
    edges[starts[lengths > 0]] = 1
    np.subtract.at(edges, ends[lengths > 0], 1)
    keep = np.cumsum(edges[:-1], dtype=np.int8) > 0
    return np.frombuffer(raw, dtype=np.uint8)[keep].tobytes()


def _decode(body: bytes, starts: I64, lengths: I64) -> tuple[bytes, I64, Mask]:
    """Strict base64 of each of the joined texts in ``body``: (decoded bytes, padding of
    each, which texts are not canonical base64). Decoded, text ``i`` starts at byte
    ``starts[i] // 4 * 3``."""
    arr = np.frombuffer(body + b"\0", dtype=np.uint8)
    ends = starts + lengths
    equals = np.flatnonzero(arr[:-1] == _EQ)
    owner = np.searchsorted(ends, equals, side="right")
    last = ends[owner] - 1
    legal = (equals == last) | ((equals == last - 1) & (arr[equals + 1] == _EQ))
    bad = np.zeros(starts.size, dtype=np.bool_)
    bad[owner[~legal]] = True
    if bad.any():
        return b"", np.zeros(0, dtype=np.int64), bad
    try:
        decoded = binascii.a2b_base64(body.replace(b"=", b"A"), strict_mode=True)
    except binascii.Error:  # a character outside the alphabet: find its texts
        strange = np.flatnonzero(~_B64[arr[:-1]] & (arr[:-1] != _EQ))
        bad[np.searchsorted(ends, strange, side="right")] = True
        return b"", np.zeros(0, dtype=np.int64), bad
    pads = np.bincount(owner, minlength=starts.size).astype(np.int64)
    return decoded, pads, bad
