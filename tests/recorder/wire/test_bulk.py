"""The decoder's bulk paths (whole-batch unwrap, shared layouts) against its reference path.

``decode_batch(frames)`` must give exactly what ``decode_batch(frames, reference=True)``
gives (every frame unwrapped on its own, every payload walked field by field): the same
Arrow table bit for bit, the same frame index, the same errors with the same reasons, the
same skips and unknown fields. The corpora are the simulator's frames (paced with every
fault, and burst), messages with every field set, and messages corrupted byte by byte
while keeping their length, so that many share a length but not a layout.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pytest

from lake.pricing_pb2 import PricingData
from lake.schema import TICK_FIELDS
from recorder.wire import frames as frames_module
from recorder.wire.decode import DecodedBatch, decode_batch
from recorder.wire.layouts import MIN_ROWS, match
from tests.kit.frames import envelope, v1, v2
from ticklake.simulator.config import SimulatorConfig
from ticklake.simulator.feed import Feed
from ticklake.simulator.frames import FrameMaker
from ticklake.simulator.wire import encode, field_bytes, frame_texts

T0 = 1_713_276_945_000
SYMBOLS = ["AMZN", "MSFT", "SPY", "QQQ", "EURUSD=X", "BTC-USD", "ETH-USD", "ES=F", "^GSPC"]


def random_message(rng: random.Random) -> PricingData:
    """A message with an id, a time and about half of the other fields, random values
    of every kind (extreme integers, non-ASCII strings, repeated elements)."""
    msg = PricingData(id=rng.choice(["AMZN", "^GSPC", "EURUSD=X", "BTC-USD", "ÄÖ€", "x" * 40]))
    msg.time = rng.choice([T0, -1, 2**62, rng.randrange(-(10**13), 10**13)])
    for f in TICK_FIELDS:
        if f.number in (1, 3) or rng.random() < 0.5:
            continue
        if f.kind == "strings":
            getattr(msg, f.name).extend(random_text(rng) for _ in range(rng.randrange(0, 4)))
        elif f.kind == "string":
            setattr(msg, f.name, random_text(rng))
        elif f.kind in ("float", "double"):
            setattr(msg, f.name, rng.choice([rng.uniform(-1e6, 1e6), float("inf"), 0.0]))
        elif f.kind == "sint64":
            setattr(msg, f.name, rng.choice([1, -1, 2**63 - 1, -(2**63), rng.randrange(2**40)]))
        else:
            setattr(msg, f.name, rng.choice(list(f.enum_names or {0: ""})))
    return msg


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice("abcXYZ09=^-é😀") for _ in range(rng.randrange(0, 12)))


def bits(table: pa.Table) -> list[pa.Array]:
    """The columns, floats as their bits (NaN equals NaN when its bits do)."""
    out = []
    for column in table.columns:
        array = column.combine_chunks()
        if pa.types.is_float32(array.type):
            array = array.view(pa.int32())
        elif pa.types.is_float64(array.type):
            array = array.view(pa.int64())
        out.append(array)
    return out


def assert_same(frames: Sequence[str | bytes]) -> DecodedBatch:
    fast, slow = decode_batch(frames), decode_batch(frames, reference=True)
    assert fast.ticks.schema == slow.ticks.schema
    assert all(a.equals(b) for a, b in zip(bits(fast.ticks), bits(slow.ticks), strict=True))
    assert fast.frame_index.tolist() == slow.frame_index.tolist()
    assert [(e.index, e.reason) for e in fast.errors] == [(e.index, e.reason) for e in slow.errors]
    assert fast.skipped == slow.skipped
    assert fast.unknown_fields == slow.unknown_fields
    return fast


def paced_frames(version: int, count: int, faulty: bool = False) -> list[str]:
    """Frames of the simulator's paced mode over several asset classes, with every fault
    the simulator has if ``faulty``."""
    feed = Feed(seed=3, rate=1.0)
    rate = 0.05 if faulty else 0.0
    config = SimulatorConfig(seed=3, garbage_rate=rate, duplicate_rate=rate, late_rate=rate,
                             disorder_rate=rate, other_type_rate=rate)  # fmt: skip
    maker = FrameMaker(config, version, connection_id=1)
    ticks = [
        feed.symbol(SYMBOLS[i % len(SYMBOLS)]).next_tick(T0 + 1000 * (i // 50), 1, 1)
        for i in range(count)
    ]
    return [frame.text for frame in maker.frames(ticks)]


def burst_frames(version: int, rounds: int, symbols: list[str]) -> list[str]:
    """Frames of the simulator's burst encoder, unwrapped from their WebSocket headers."""
    feed = Feed(seed=5, rate=1.0)
    clock = field_bytes(PricingData(time=T0, market_hours=PricingData.REGULAR_MARKET))
    statics = [field_bytes(feed.symbol(s).template) | clock for s in symbols]
    columns = [feed.symbol(s).next_columns(rounds, 1, 1) for s in symbols]
    return frame_texts(encode(statics, columns, version).frames)


@pytest.mark.parametrize("version", [1, 2])
def test_simulator_burst_frames_take_the_bulk_paths_and_equal_the_reference(version: int) -> None:
    frames = burst_frames(version, 150, SYMBOLS + [f"C{i:03d}-USD" for i in range(30)])
    batch = assert_same(frames)
    assert batch.ticks.num_rows == len(frames) and not batch.errors
    if version == 2:  # the whole batch is unwrapped at once ...
        assert frames_module._all_compact(frames) is not None
    payloads = frames_module.unwrap_batch(frames)
    data = np.frombuffer(payloads.data, dtype=np.uint8)
    rows = np.arange(len(frames), dtype=np.int64)
    left = match(payloads.data, data, payloads.starts, payloads.lengths, rows, lambda _: None)
    assert left.size < len(frames) // 2  # ... and most messages are read by layout


@pytest.mark.parametrize("version", [1, 2])
def test_simulator_frames_with_every_fault_equal_the_reference(version: int) -> None:
    frames = paced_frames(version, 3000, faulty=True)
    batch = assert_same(frames)
    assert batch.errors and batch.ticks.num_rows > 2500
    if version == 2:
        assert batch.skipped


def test_messages_with_every_field_set_equal_the_reference() -> None:
    rng = random.Random(11)
    messages = [random_message(rng) for _ in range(300)]
    # One layout many times over, so that it is read by layout: every field, indices too.
    full = random_message(rng)
    full.indices.extend(["^GSPC", "^DJI"])
    for f in PricingData.DESCRIPTOR.fields:
        if not f.is_repeated and not full.HasField(f.name):
            setattr(full, f.name, 1 if f.type != f.TYPE_STRING else "x")
    messages += [full] * (3 * MIN_ROWS)
    assert_same([v2(m) for m in messages] + [v1(m) for m in messages])
    assert_same([v2(m) for m in messages])


def test_messages_of_one_length_but_other_layouts_equal_the_reference() -> None:
    """Byte flips keep the length: tags, varint continuation bits, string lengths change
    (other layouts, malformed messages, unknown fields, overlong varints), or only values;
    the first message of a length may itself be malformed."""
    rng = random.Random(5)
    base = [random_message(rng).SerializeToString() for _ in range(4)]
    payloads = []
    for i in range(4000):
        payload = bytearray(base[i % 4])
        for _ in range(rng.choice([0, 0, 1, 2])):
            payload[rng.randrange(len(payload))] = rng.randrange(256)
        payloads.append(bytes(payload))
    payloads.insert(0, base[0][:-1] + b"\xff")  # a malformed representative
    payloads += [b"\x0a\x01A\x18\x80\x80\x00" + b"\x90\x03\x01"] * MIN_ROWS  # overlong, unknown
    batch = assert_same([envelope(base64.b64encode(p).decode()) for p in payloads])
    assert batch.errors and batch.unknown_fields


def test_frames_that_look_compact_but_are_not_fall_back_exactly() -> None:
    """Each odd frame, put among clean ones, still gets exactly :func:`unwrap`'s verdict."""
    clean = paced_frames(2, 200)
    message = clean[7][len(frames_module.V2_PREFIX) : -len(frames_module.V2_SUFFIX)]
    odd: list[str | bytes] = [
        "",
        clean[3] + clean[4],  # two envelopes in one frame
        clean[3][:-2] + "=" + clean[3][-2:],  # text not a whole number of quanta
        envelope("QQ=="),
        envelope("QQ=A"),  # "=" inside
        envelope("Q==="),
        envelope("===="),
        envelope("QQ==QQ=="),
        envelope(""),
        envelope(message.replace("/", "\\/")),
        envelope(message[:8] + "\n" + message[9:]),
        envelope(message[:8] + "é" + message[9:]),
        clean[5].replace('":"', '": "', 1),
        '{"type":"heartbeat"}',
        clean[6].encode(),
        message,  # a v1 frame among v2 ones
        message[:-4] + "*" + message[-3:],
        "A" * (frames_module.MAX_FRAME_CHARS + 1),
        clean[8][:-1],
        "{" + clean[8][1:-1] + "}",
    ]
    for i, frame in enumerate(odd):
        frames: list[str | bytes] = list(clean)
        frames.insert(i * 7 % len(clean), frame)
        assert_same(frames)
        assert_same([frame])
    assert_same([*clean, *odd])
    assert_same([])


def test_frames_that_join_into_clean_envelopes_are_not_taken_for_them() -> None:
    """Cut and joined differently, these frames read like clean envelopes as one text:
    each alone is invalid, and stays so."""
    prefix, suffix = frames_module.V2_PREFIX, frames_module.V2_SUFFIX
    clean = paced_frames(2, 100)
    straddling = [prefix + "AAAA" + suffix + prefix + "BBB", "B" * 33 + suffix]
    doubled = [prefix + "AAAA" + suffix + prefix + "BBBBB" + suffix]
    for odd in (straddling, doubled):
        batch = assert_same(clean[:50] + odd + clean[50:])
        assert len(batch.errors) == len(odd)
