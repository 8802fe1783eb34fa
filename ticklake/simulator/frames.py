"""Ticks into the text frames of one connection: v1/v2 framing and per-frame fault injection.

v1 frames are the bare base64 of a serialized ``PricingData``; v2 frames are exactly
``{"type":"pricing","message":"<base64>"}`` (compact, ``type`` first), as Yahoo sends them.

Invariants:
- without faults every tick becomes exactly one frame, in order;
- no garbage frame decodes into a tick, whichever step a client checks: invalid JSON, a v2
  envelope without ``message``, base64 that fails even lenient decoding, bytes that are
  not a ``PricingData`` (a truncated one, or random bytes starting with the invalid tag 0),
  or an empty frame (in v1 it decodes to an empty ``PricingData``: no id, no time);
- a duplicate is the identical text sent twice in a row; a disordered tick is stamped 1-5 s
  before the previous tick of the connection, a late one 20-120 s before its own time,
  both in whole seconds;
- faults are drawn from a generator seeded by ``(seed, connection id)`` and only when
  their rate is nonzero, so a run without faults draws nothing.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable
from typing import Final, NamedTuple

from lake.pricing_pb2 import PricingData
from ticklake.simulator.config import SimulatorConfig
from ticklake.simulator.feed import Tick

__all__ = ["Frame", "FrameMaker", "v2_frame"]

GARBAGE_KINDS: Final = ("invalid_base64", "truncated_protobuf", "random_bytes", "empty")
V2_GARBAGE_KINDS: Final = (*GARBAGE_KINDS, "invalid_json", "missing_message")
OTHER_TYPE_FRAMES: Final = ('{"type":"heartbeat"}', '{"type":"status","message":"streaming"}')


class Frame(NamedTuple):
    text: str
    symbol: str | None  # None for a frame that carries no tick (another v2 type)
    garbage: bool = False


def v2_frame(b64: str) -> str:
    return '{"type":"pricing","message":"' + b64 + '"}'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _retimed(tick: Tick, time_ms: int) -> str:
    message = PricingData.FromString(tick.payload)
    message.time = time_ms
    return _b64(message.SerializeToString())


class FrameMaker:
    """The frames of one connection, with the configured faults drawn per tick."""

    def __init__(self, config: SimulatorConfig, version: int, connection_id: int) -> None:
        self.config, self.version = config, version
        self._rng = random.Random(f"{config.seed}:frames:{connection_id}")
        self._previous_ms: int | None = None
        self._garbage_kinds = V2_GARBAGE_KINDS if version == 2 else GARBAGE_KINDS
        self._other_rate = config.other_type_rate if version == 2 else 0.0

    def frames(self, ticks: Iterable[Tick]) -> list[Frame]:
        config, rng, out = self.config, self._rng, []
        wrap = v2_frame if self.version == 2 else str
        for tick in ticks:
            if self._other_rate and rng.random() < self._other_rate:
                out.append(Frame(rng.choice(OTHER_TYPE_FRAMES), None))
            b64 = tick.b64
            if config.disorder_rate and self._previous_ms and rng.random() < config.disorder_rate:
                b64 = _retimed(tick, self._previous_ms - rng.randint(1, 5) * 1000)
            elif config.late_rate and rng.random() < config.late_rate:
                b64 = _retimed(tick, tick.time_ms - rng.randint(20, 120) * 1000)
            self._previous_ms = tick.time_ms
            if config.garbage_rate and rng.random() < config.garbage_rate:
                frame = Frame(self._garbage(tick), tick.symbol, garbage=True)
            else:
                frame = Frame(wrap(b64), tick.symbol)
            out.append(frame)
            if config.duplicate_rate and rng.random() < config.duplicate_rate:
                out.append(frame)
        return out

    def _garbage(self, tick: Tick) -> str:
        """A frame of a randomly chosen kind that no client can decode into a tick."""
        rng, kind = self._rng, self._rng.choice(self._garbage_kinds)
        if kind == "empty":
            return ""
        if kind == "invalid_json":
            return '{"type":"pricing","message":"' + tick.b64[: rng.randint(0, 20)]
        if kind == "missing_message":
            return '{"type":"pricing"}'
        if kind == "invalid_base64":
            # 4k+1 alphabet characters can never decode, even leniently; "*" is off-alphabet.
            data = tick.b64.rstrip("=")
            data = data[: (len(data) - 1) // 4 * 4 + 1]
            cut = rng.randint(0, len(data))
            text = data[:cut] + "*" + data[cut:]
        elif kind == "truncated_protobuf":
            text = _b64(tick.payload[:-1])  # the last field loses its final byte
        else:  # random bytes whose first byte is a tag of field 0, which is always invalid
            text = _b64(bytes([rng.randrange(8)]) + rng.randbytes(rng.randint(4, 40)))
        return v2_frame(text) if self.version == 2 else text
