"""The feed over real sockets on 127.0.0.1: against the simulator (v1/v2, >100 symbols,
drops, stalls, closed markets) and against tiny raw servers of our own (subscription
messages, batching and order, binary frames, close codes, connect failures, errors)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from lake.clock import Clock, ManualClock, SystemClock
from lake.pricing_pb2 import PricingData
from lake.sessions import Session, SessionLog, read_sessions
from recorder.feed import ConnectionState, Feed, FeedConfig, FeedError
from tests.kit.times import SUNDAY_03_NY_S
from ticklake.simulator import Simulator, SimulatorConfig

CRYPTO = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]
FAST = {"backoff_base": 0.01, "backoff_cap": 0.05, "healthy_after": 0.0}


class Recorder:
    """An ``on_frames`` that keeps everything it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str | bytes], int, int]] = []

    def __call__(self, frames: list[str | bytes], received_at_us: int, connection: int) -> None:
        self.calls.append((list(frames), received_at_us, connection))

    @property
    def frames(self) -> list[str | bytes]:
        return [f for frames, _, _ in self.calls for f in frames]

    def symbols(self, version: int = 2) -> set[str]:
        return {decode(f, version).id for f in self.frames}


def decode(frame: str | bytes, version: int = 2) -> PricingData:
    assert isinstance(frame, str)
    message = json.loads(frame)["message"] if version == 2 else frame
    return PricingData.FromString(base64.b64decode(message))


def make_feed(
    tmp_path: Path, url: str, symbols: list[str], clock: Clock, **config: Any
) -> tuple[Feed, Recorder]:
    sink = Recorder()
    log = SessionLog(tmp_path / "sessions.jsonl")
    feed_config = FeedConfig(url=url, **config)
    return Feed(feed_config, symbols, sink, clock, log, random.Random(1)), sink


async def run_until(
    feed: Feed, done: Callable[[], bool], timeout: float, tick: Callable[[], None] = lambda: None
) -> None:
    """Run the feed until ``done()`` (polled every 20 ms, calling ``tick``) or ``timeout``."""
    task = asyncio.create_task(feed.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done() and loop.time() < deadline and not task.done():
        await asyncio.sleep(0.02)
        tick()
    feed.stop()
    await asyncio.wait_for(task, 5)


def test_frames_flow_for_several_symbols_on_v2_and_v1(tmp_path: Path) -> None:
    async def main(version: int) -> Recorder:
        clock = SystemClock()
        async with Simulator(SimulatorConfig(rate=20, seed=1), clock=clock) as sim:
            url = sim.url if version == 2 else sim.url_v1
            feed, sink = make_feed(tmp_path / f"v{version}", url, CRYPTO, clock)
            await run_until(feed, lambda: sink.symbols(version) == set(CRYPTO), 5)
            assert feed.frames_received == len(sink.frames)
            assert feed.connections[0].state is ConnectionState.STOPPED
        return sink

    for version in (2, 1):
        sink = asyncio.run(main(version))
        assert sink.symbols(version) == set(CRYPTO)
        assert all(conn == 1 for _, _, conn in sink.calls)
        received = [at for _, at, _ in sink.calls]
        assert received == sorted(received)
        assert abs(received[-1] / 1e6 - SystemClock().now()) < 10


def test_250_symbols_open_3_connections_and_every_symbol_streams(tmp_path: Path) -> None:
    symbols = [f"C{i:03d}-USD" for i in range(250)]  # crypto-shaped: always open

    async def main() -> tuple[Feed, Recorder, int]:
        clock = SystemClock()
        async with Simulator(SimulatorConfig(rate=4, seed=2), clock=clock) as sim:
            feed, sink = make_feed(tmp_path, sim.url, symbols, clock, symbols_per_connection=100)
            opened = 0

            def watch() -> None:
                nonlocal opened
                opened = max(opened, sim.connections)

            await run_until(feed, lambda: sink.symbols() == set(symbols), 8, watch)
        return feed, sink, opened

    feed, sink, opened = asyncio.run(main())
    assert opened == 3
    assert [len(c.symbols) for c in feed.connections] == [100, 100, 50]
    assert [c.symbols[0] for c in feed.connections] == ["C000-USD", "C100-USD", "C200-USD"]
    assert sink.symbols() == set(symbols)
    by_connection: dict[int, set[str]] = {}
    for frames, _, conn in sink.calls:
        by_connection.setdefault(conn, set()).update(decode(f).id for f in frames)
    for status in feed.connections:
        assert by_connection[status.id] == set(status.symbols)


def test_drops_are_reconnected_and_logged_and_data_keeps_flowing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.feed")

    async def main() -> tuple[Feed, Recorder]:
        clock = SystemClock()
        async with Simulator(SimulatorConfig(rate=20, seed=3, drop_every=0.3), clock=clock) as sim:
            feed, sink = make_feed(tmp_path, sim.url, CRYPTO[:2], clock, **FAST)

            def sessions() -> list[Session]:
                return read_sessions(tmp_path / "sessions.jsonl")

            await run_until(feed, lambda: len(sessions()) >= 4 and sessions()[-1].end is None, 6)
        return feed, sink

    feed, sink = asyncio.run(main())
    sessions = read_sessions(tmp_path / "sessions.jsonl")
    assert len(sessions) >= 4
    assert feed.reconnects == len(sessions) - 1
    assert [s.session for s in sessions] == list(range(1, len(sessions) + 1))
    for before, after in itertools.pairwise(sessions):
        assert before.reason is not None and before.reason.startswith("dropped: ")
        assert before.end is not None and before.end <= after.start
    assert sessions[-1].reason == "stopped"
    assert all(s.symbols == ("BTC-USD", "ETH-USD") for s in sessions)
    last_start = sessions[-1].start * 1e6
    assert any(at >= last_start for _, at, _ in sink.calls)  # data after the last reconnect
    delays = [r.getMessage() for r in caplog.records if "event=reconnect_delay" in r.getMessage()]
    assert len(delays) == feed.reconnects
    assert all("attempt=0" in d for d in delays)  # every session got data: backoff was reset


def test_a_stalled_connection_is_reconnected_by_the_watchdog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.feed")

    async def main() -> Recorder:
        clock = SystemClock()
        async with Simulator(SimulatorConfig(rate=20, seed=4, stall_after=0.3), clock=clock) as sim:
            feed, sink = make_feed(tmp_path, sim.url, CRYPTO[:2], clock, stale_after=0.4, **FAST)

            def sessions() -> list[Session]:
                return read_sessions(tmp_path / "sessions.jsonl")

            await run_until(feed, lambda: len(sessions()) >= 3, 6)
        return sink

    sink = asyncio.run(main())
    sessions = read_sessions(tmp_path / "sessions.jsonl")
    assert len(sessions) >= 3
    for session in sessions[:-1]:
        assert session.reason is not None and session.reason.startswith("stale: no data for")
        assert session.end is not None
        start_us, end_us = session.start * 1e6, session.end * 1e6
        heard = [at for _, at, _ in sink.calls if start_us <= at <= end_us]
        assert heard  # data flowed in every session before the stall
        assert session.end - max(heard) / 1e6 >= 0.4 - 0.001  # then silence of stale_after
    assert any("event=stale conn=1 silent_for=" in r.getMessage() for r in caplog.records)


def test_closed_market_group_is_left_alone_while_crypto_group_is_reconnected(
    tmp_path: Path,
) -> None:
    clock = ManualClock(SUNDAY_03_NY_S)  # US equities closed, crypto open

    async def main() -> Feed:
        config = SimulatorConfig(rate=20, seed=5, stall_after=0.2)
        async with Simulator(config, clock=clock) as sim:
            feed, _ = make_feed(
                tmp_path, sim.url, ["AAPL", "MSFT", *CRYPTO[:2]], clock,
                symbols_per_connection=2, stale_after=1.0, **FAST,
            )  # fmt: skip
            crypto = feed.connections[1]
            enough = lambda: crypto.reconnects >= 2 and clock.now() > SUNDAY_03_NY_S + 4  # noqa: E731
            await run_until(feed, enough, 8, lambda: clock.advance(0.1))
        return feed

    feed = asyncio.run(main())
    equities, crypto = feed.connections
    assert equities.symbols == ("AAPL", "MSFT") and crypto.symbols == ("BTC-USD", "ETH-USD")
    assert crypto.reconnects >= 2
    assert equities.reconnects == 0 and equities.frames_received == 0
    sessions = read_sessions(tmp_path / "sessions.jsonl")
    assert [s.reason for s in sessions if s.connection == 1] == ["stopped"]
    crypto_reasons = [s.reason or "" for s in sessions if s.connection == 2]
    assert all(r.startswith("stale: ") for r in crypto_reasons[:-1])
    assert clock.now() > SUNDAY_03_NY_S + 4  # equities sat silent for 4 x stale_after


async def raw_server(
    handler: Callable[[ServerConnection], Awaitable[None]], run: Callable[[str], Awaitable[None]]
) -> None:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        await run(f"ws://127.0.0.1:{port}/")


def test_subscription_is_compact_json_and_resent_periodically(tmp_path: Path) -> None:
    received: list[str | bytes] = []
    close_codes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)
            await ws.send('{"type":"pricing","message":""}')
        close_codes.append(ws.close_code)

    async def run(url: str) -> None:
        feed, _ = make_feed(tmp_path, url, ["AMZN", "^GSPC", "EURUSD=X"], SystemClock(),
                            resubscribe_every=0.1)  # fmt: skip
        await run_until(feed, lambda: len(received) >= 5, 3)
        await asyncio.sleep(0.05)  # let the server see the close

    asyncio.run(raw_server(handler, run))
    assert len(received) >= 5
    assert set(received) == {'{"subscribe":["AMZN","^GSPC","EURUSD=X"]}'}
    assert close_codes == [1000]
    assert [s.reason for s in read_sessions(tmp_path / "sessions.jsonl")] == ["stopped"]


def test_frames_arrive_in_order_once_each_in_batches_text_and_binary(tmp_path: Path) -> None:
    count = 5000

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(b"\x00\xffbinary")
        for i in range(count):
            await ws.send(f"frame-{i}")
        await ws.wait_closed()

    sink = Recorder()

    async def run(url: str) -> None:
        nonlocal sink
        feed, sink = make_feed(tmp_path, url, ["X"], SystemClock())
        await run_until(feed, lambda: len(sink.frames) >= count + 1, 5)

    asyncio.run(raw_server(handler, run))
    assert sink.frames[0] == b"\x00\xffbinary"  # binary frames pass through as bytes
    assert sink.frames[1:] == [f"frame-{i}" for i in range(count)]
    assert len(sink.calls) < count / 2  # buffered frames are handed over together


def test_unreachable_server_is_retried_forever_with_growing_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.feed")

    async def main() -> Feed:
        async with serve(lambda ws: ws.close(), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
        # the port is closed now: every attempt is refused
        feed, _ = make_feed(tmp_path, f"ws://127.0.0.1:{port}/", ["X"], SystemClock(),
                            backoff_base=0.001, backoff_cap=0.01)  # fmt: skip
        await run_until(feed, lambda: feed.reconnects >= 6, 5)
        return feed

    feed = asyncio.run(main())
    assert feed.reconnects >= 6
    attempts = [
        int(r.getMessage().rsplit("attempt=", 1)[1])
        for r in caplog.records
        if "event=reconnect_delay" in r.getMessage()
    ]
    assert attempts[:6] == [0, 1, 2, 3, 4, 5]
    assert any("event=connect_failed conn=1" in r.getMessage() for r in caplog.records)
    assert read_sessions(tmp_path / "sessions.jsonl") == []  # no session was ever open


def test_an_error_in_on_frames_stops_the_feed_and_is_raised(tmp_path: Path) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("boom")
        await ws.wait_closed()

    class DiskFull(OSError):
        pass

    def on_frames(frames: list[str | bytes], received_at_us: int, connection: int) -> None:
        raise DiskFull("no space left on device")

    async def run(url: str) -> None:
        log = SessionLog(tmp_path / "sessions.jsonl")
        feed = Feed(FeedConfig(url=url), ["X"], on_frames, SystemClock(), log)
        await asyncio.wait_for(feed.run(), 5)

    with pytest.raises(DiskFull, match="no space"):
        asyncio.run(raw_server(handler, run))
    (session,) = read_sessions(tmp_path / "sessions.jsonl")
    assert session.reason == "error: DiskFull: no space left on device"


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="url"):
        FeedConfig(url="http://example.com/")
    with pytest.raises(FeedError, match="symbols_per_connection"):
        FeedConfig(symbols_per_connection=0)
    with pytest.raises(FeedError, match="stale_after"):
        FeedConfig(stale_after=0)
    with pytest.raises(FeedError, match="backoff_cap"):
        FeedConfig(backoff_base=2.0, backoff_cap=1.0)
    log = SessionLog(tmp_path / "sessions.jsonl")
    with pytest.raises(FeedError, match="no symbols"):
        Feed(FeedConfig(), [], Recorder(), SystemClock(), log)
    feed = Feed(FeedConfig(symbols_per_connection=2), ["A", "B", "A", "C"], Recorder(),
                SystemClock(), log)  # fmt: skip
    assert [c.symbols for c in feed.connections] == [("A", "B"), ("C",)]


def test_a_graceful_stop_hands_over_every_frame_sent_before_the_close(tmp_path: Path) -> None:
    sent = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal sent
        await ws.recv()
        with contextlib.suppress(ConnectionClosed):
            while True:  # frames keep arriving during the closing handshake
                await ws.send(f"f{sent}")
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0)

    frames: list[str | bytes] = []

    async def run(url: str) -> None:
        def on_frames(batch: list[str | bytes], received_at_us: int, connection: int) -> None:
            frames.extend(batch)
            if len(frames) >= 500:
                feed.stop()

        log = SessionLog(tmp_path / "sessions.jsonl")
        feed = Feed(FeedConfig(url=url), ["X"], on_frames, SystemClock(), log)
        await asyncio.wait_for(feed.run(), 5)
        await asyncio.sleep(0.05)  # the server handler ends

    asyncio.run(raw_server(handler, run))
    assert frames == [f"f{i}" for i in range(len(frames))]  # in order, once each
    # every frame written before the server's close frame reached on_frames (the last one
    # may have been written by a send that then failed)
    assert sent <= len(frames) <= sent + 1
