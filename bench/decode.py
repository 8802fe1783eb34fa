"""Frames decoded into columns per second on one core, beside the bare base64+parse rate.

    python -m bench.decode [--frames 400000] [--batch 10000] [--burst-frames 100000]
                           [--burst-symbols 100]

The baseline is the least any decoder must do per frame: base64-decode and parse with
protobuf's C parser (upb), extracting nothing. ticklake's decoder does that work *and* yields
all 47 columns; the ratio is printed in the same run. Frames are a realistic mix (equities,
ETFs, FX, crypto, futures) in Yahoo's v2 envelope, the recorder's default, and in v1.

Then the lake writer's case: ``--burst-frames`` frames of the simulator's burst mode
(``--burst-symbols`` crypto symbols, as ``bench.lake_path`` streams them), decoded in one
batch as the writer does: CPU time per frame (``time.process_time``, best of 5, so other
load on the machine counts little), of ``decode_batch`` and of its reference path
(``reference=True``: each frame unwrapped alone, every message walked field by field).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import random
import time
from collections.abc import Callable

from lake.schema import PricingData
from recorder.wire.decode import decode_batch
from ticklake.simulator.burst import CHUNK_FRAMES
from ticklake.simulator.feed import Feed
from ticklake.simulator.wire import encode, field_bytes, frame_texts

Q = PricingData


def sample_messages(count: int, seed: int = 1) -> list[PricingData]:
    rng = random.Random(seed)
    out = []
    t = 1_713_276_945_000
    for i in range(count):
        kind = i % 5
        price = round(rng.uniform(20, 500), 2)
        if kind in (0, 1):  # equity / ETF
            msg = Q(
                id=rng.choice(["AMZN", "MSFT", "BRK-B", "SPY"]),
                price=price,
                time=t,
                exchange="NMS",
                quote_type=Q.EQUITY if kind == 0 else Q.ETF,
                market_hours=Q.REGULAR_MARKET,
                change_percent=rng.uniform(-3, 3),
                day_volume=rng.randrange(10**6, 10**8),
                day_high=price + 1,
                day_low=price - 1,
                change=rng.uniform(-5, 5),
                last_size=100,
                price_hint=2,
                full_day_change=0.5,
                full_day_change_percent=0.3,
            )
        elif kind == 2:  # FX: no volume
            msg = Q(
                id="EURUSD=X",
                price=round(rng.uniform(1.05, 1.1), 4),
                time=t,
                currency="USD",
                exchange="CCY",
                quote_type=Q.CURRENCY,
                market_hours=Q.REGULAR_MARKET,
                change_percent=0.1,
                day_high=1.1,
                day_low=1.05,
                change=0.001,
                price_hint=4,
            )
        elif kind == 3:  # crypto: the rolling 24 h volume fields
            vol = rng.randrange(10**9, 10**11)
            msg = Q(
                id="BTC-USD",
                price=price * 200,
                time=t,
                currency="USD",
                exchange="CCC",
                quote_type=Q.CRYPTOCURRENCY,
                market_hours=Q.REGULAR_MARKET,
                change_percent=1.2,
                day_volume=vol,
                day_high=70000,
                day_low=60000,
                change=800,
                short_name="Bitcoin USD",
                price_hint=2,
                vol_24hr=vol,
                vol_all_currencies=vol,
                from_currency="BTC",
                last_market="CoinMarketCap",
                circulating_supply=19_700_000.0,
                market_cap=1.3e12,
                last_size=vol,
            )
        else:  # future
            msg = Q(
                id="ES=F",
                price=price * 10,
                time=t,
                exchange="CME",
                quote_type=Q.FUTURE,
                market_hours=Q.REGULAR_MARKET,
                day_volume=rng.randrange(10**5, 10**6),
                open_interest=2_000_000,
                change=3.5,
                price_hint=2,
            )
        t += 1000 * rng.randrange(0, 2)
        out.append(msg)
    return out


def burst_frames(count: int, symbols: int, seed: int = 1) -> list[str]:
    """``count`` v2 frames as the simulator's burst mode makes them: chunks of one tick of
    every symbol per round, a second apart (see ``ticklake.simulator.burst``)."""
    names = [f"C{i:03d}-USD" for i in range(symbols)]  # as bench.ingest's symbols
    feed, rounds = Feed(seed, 1.0), max(1, CHUNK_FRAMES // symbols)
    hours = PricingData.REGULAR_MARKET
    out: list[str] = []
    t = 1_713_276_945_000
    while len(out) < count:
        clock = field_bytes(PricingData(time=t, market_hours=hours))
        statics = [field_bytes(feed.symbol(s).template) | clock for s in names]
        columns = [feed.symbol(s).next_columns(rounds, hours, 1) for s in names]
        out += frame_texts(encode(statics, columns, 2).frames)
        t += 1000
    return out[:count]


def cpu_per_frame(fn: Callable[[], object], count: int, repeats: int = 5) -> float:
    """CPU microseconds per frame of ``fn``, best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def rate(fn: Callable[[], object], count: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--burst-frames", type=int, default=100_000)
    parser.add_argument("--burst-symbols", type=int, default=100)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    messages = sample_messages(args.frames)
    v1 = [base64.b64encode(m.SerializeToString()).decode() for m in messages]
    v2 = ['{"type":"pricing","message":"' + f + '"}' for f in v1]
    size = args.batch

    def bare() -> None:
        parse, a2b = PricingData.FromString, binascii.a2b_base64
        for f in v1:
            parse(a2b(f))

    def ours(frames: list[str]) -> Callable[[], None]:
        def run() -> None:
            for i in range(0, len(frames), size):
                decode_batch(frames[i : i + size])

        return run

    assert decode_batch(v2[:size]).ticks.num_rows == min(size, len(v2))
    base = rate(bare, len(v1))
    r1 = rate(ours(v1), len(v1))
    r2 = rate(ours(v2), len(v2))
    print(
        f"frames: {len(v1):,} ({sum(map(len, v2)) / len(v2):.0f} chars avg in v2), batch {size:,}"
    )
    print(f"baseline  base64 + upb parse, no columns (v1): {base / 1e3:8.0f} k frames/s")
    print(
        f"ticklake  decode_batch -> 47 Arrow columns, v1: {r1 / 1e3:8.0f} k frames/s"
        f"  ({r1 / base:.2f}x baseline)"
    )
    print(
        f"ticklake  decode_batch -> 47 Arrow columns, v2: {r2 / 1e3:8.0f} k frames/s"
        f"  ({r2 / base:.2f}x baseline)  target >= 300 k/s"
    )
    burst = burst_frames(args.burst_frames, args.burst_symbols)
    fast = cpu_per_frame(lambda: decode_batch(burst), len(burst))
    slow = cpu_per_frame(lambda: decode_batch(burst, reference=True), len(burst))
    print(
        f"burst     {len(burst):,} frames of {args.burst_symbols} symbols, one batch:"
        f" decode_batch {fast:.2f} us CPU/frame, reference path {slow:.2f} us"
        f" ({slow / fast:.2f}x)"
    )


if __name__ == "__main__":
    main()
