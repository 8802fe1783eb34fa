"""The recorder's WebSocket connections to the streamer: subscribe, keep alive, reconnect.

Symbols are split, in the order given (duplicates dropped), into groups of
``symbols_per_connection``; each group gets one connection that, forever, connects, sends
``{"subscribe": group}``, hands frames to ``on_frames``, resubscribes every
``resubscribe_every`` s until the session ends (drop, staleness, error, stop), then waits a
capped, fully jittered backoff and connects again.

Invariants:
- every received message (``str`` for text frames, ``bytes`` for binary ones) is handed to
  ``on_frames(frames, received_at_us, connection_id)`` exactly once, in arrival order,
  synchronously from the receive loop, before the next message is read; messages already
  buffered by websockets are handed over together in one call (``received_at_us`` is the
  injected clock's time when the batch is handed over). A session ends by closing the
  socket while the receiver keeps reading until the close frame, so a graceful stop hands
  over every frame the server sent before it saw the close;
- a connection is only ever reconnected through its own backoff (no reconnect storm, no
  give-up-after-N); the backoff restarts from ``backoff_base`` after a session that
  received data and lasted ``healthy_after`` seconds;
- the watchdog ends a session that received nothing for ``stale_after`` seconds while at
  least one of its symbols' markets was open (``recorder.wire.markets.is_open``); time spent with
  every market of the group closed does not count as silence;
- every session is recorded in the :class:`~lake.sessions.SessionLog` (start, then end
  with its reason; a failed write is logged there and does not stop recording);
- an exception raised by ``on_frames`` ends its session with ``error: ...``, stops the whole
  feed and is re-raised by :meth:`Feed.run`.

Batches come from peeking at ``recv_messages.frames``, an undocumented attribute of
websockets' asyncio connection (without it each message is its own batch): one
``Journal.append_many`` call per batch keeps up with a bare ``async for`` loop; one call
per message would not (README, Benchmarks: ingest).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from lake.backoff import Backoff
from lake.clock import Clock
from lake.logfmt import logfmt
from lake.sessions import SessionLog
from recorder.wire.markets import AssetClass, asset_class, is_open

__all__ = ["DEFAULT_URL", "ConnectionState", "ConnectionStatus", "Feed", "FeedConfig", "FeedError"]

log = logging.getLogger(__name__)
DEFAULT_URL: Final = "wss://streamer.finance.yahoo.com/?version=2"
CLOSE_TIMEOUT: Final = 2.0  # seconds a closing handshake may take; a stop must end within 5 s
MAX_QUEUE: Final = 1024  # messages websockets buffers before it stops reading the socket

OnFrames = Callable[[list[str | bytes], int, int], None]


class FeedError(ValueError):
    """The feed cannot be built as asked; the message names the setting to fix."""


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Connection settings; times are seconds of the injected clock."""

    url: str = DEFAULT_URL
    symbols_per_connection: int = 100
    resubscribe_every: float = 15.0
    ping_interval: float | None = 20.0  # WebSocket pings; None turns them off
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    stale_after: float = 60.0
    open_timeout: float = 10.0
    healthy_after: float = 10.0  # a session this long that received data resets the backoff

    def __post_init__(self) -> None:
        try:
            parse_uri(self.url)
        except InvalidURI as exc:
            raise FeedError(f"url must be a ws:// or wss:// URL, not {self.url!r}") from exc
        if self.symbols_per_connection < 1:
            raise FeedError(
                f"symbols_per_connection must be >= 1, not {self.symbols_per_connection}"
            )
        for name in ("resubscribe_every", "stale_after", "open_timeout", "backoff_base"):
            if not getattr(self, name) > 0:
                raise FeedError(f"{name} must be > 0 seconds, not {getattr(self, name)}")
        if not (self.ping_interval is None or self.ping_interval > 0):
            raise FeedError(f"ping_interval must be > 0 seconds or None, not {self.ping_interval}")
        if not (self.backoff_cap >= self.backoff_base and self.healthy_after >= 0):
            raise FeedError("backoff_cap must be >= backoff_base and healthy_after >= 0")


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    WAITING = "waiting"  # backing off before the next attempt
    STOPPED = "stopped"


@dataclass(slots=True)
class ConnectionStatus:
    """What one connection is doing; updated by the feed, read by anyone."""

    id: int
    symbols: tuple[str, ...]
    state: ConnectionState = ConnectionState.CONNECTING
    session: int | None = None  # number in the session log of the open (or last) session
    frames_received: int = 0
    reconnects: int = 0  # attempts after the first one
    last_frame_at: float | None = None
    classes: frozenset[AssetClass] = field(default=frozenset(), repr=False)


class Feed:
    """All connections of one recorder; :meth:`run` until :meth:`stop`."""

    def __init__(
        self,
        config: FeedConfig,
        symbols: Iterable[str],
        on_frames: OnFrames,
        clock: Clock,
        sessions: SessionLog,
        rng: random.Random | None = None,
    ) -> None:
        unique = list(dict.fromkeys(symbols))
        if not unique:
            raise FeedError("no symbols to subscribe to; pass at least one ticker")
        size = config.symbols_per_connection
        groups = [tuple(unique[i : i + size]) for i in range(0, len(unique), size)]
        self.connections = tuple(
            ConnectionStatus(n, group, classes=frozenset(map(asset_class, group)))
            for n, group in enumerate(groups, start=1)
        )
        self.config, self.clock, self.sessions = config, clock, sessions
        self._on_frames = on_frames
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()

    @property
    def frames_received(self) -> int:
        return sum(c.frames_received for c in self.connections)

    @property
    def reconnects(self) -> int:
        return sum(c.reconnects for c in self.connections)

    def stop(self) -> None:
        """Ask :meth:`run` to close every socket (code 1000) and return; safe to call twice.

        Frames that arrive while the sockets close are still handed to ``on_frames``, until
        :meth:`run` returns (within about 4 s).
        """
        self._stop.set()

    async def run(self) -> None:
        """Run every connection until :meth:`stop`; re-raises an exception of ``on_frames``."""
        tasks = [asyncio.create_task(self._connection(c)) for c in self.connections]
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for status in self.connections:
                status.state = ConnectionState.STOPPED
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _connection(self, status: ConnectionStatus) -> None:
        """One connection, forever: attempt, back off, attempt again."""
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self._rng)
        while True:
            status.state = ConnectionState.CONNECTING
            if await self._attempt(status):
                backoff.reset()
            attempt, delay = backoff.attempt, backoff.next_delay()
            status.state = ConnectionState.WAITING
            log.info(
                "event=reconnect_delay conn=%d delay=%.3f attempt=%d", status.id, delay, attempt
            )
            await self.clock.sleep(delay)
            status.reconnects += 1

    async def _attempt(self, status: ConnectionStatus) -> bool:
        """Connect and run one session; returns whether it was healthy."""
        try:
            ws = await connect(
                self.config.url,
                open_timeout=self.config.open_timeout,
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_interval,
                close_timeout=CLOSE_TIMEOUT,
                max_queue=MAX_QUEUE,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            error = logfmt(str(exc) or repr(exc))
            log.warning("event=connect_failed conn=%d error=%s", status.id, error)
            return False
        started = self.clock.now()
        received_before = status.frames_received
        session = self.sessions.start(status.id, self.config.url, status.symbols, started)
        status.state, status.session, status.last_frame_at = ConnectionState.OPEN, session, None
        url, count = logfmt(self.config.url), len(status.symbols)
        log.info(
            "event=connect conn=%d url=%s symbols=%d session=%s", status.id, url, count, session
        )
        receiver = asyncio.create_task(self._receive(ws, status))
        keeper = asyncio.create_task(self._keep(ws, status, started))
        reason = "stopped"  # unless the session ends by itself
        try:
            await asyncio.wait([receiver, keeper], return_when=asyncio.FIRST_COMPLETED)
            reason = _end_reason(receiver, keeper)
        finally:  # also when cancelled by stop()
            keeper.cancel()
            try:  # the receiver hands over what is still buffered, then sees the close
                await _close(ws)
                await asyncio.wait([receiver], timeout=1.0)
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, keeper, return_exceptions=True)
                failure = _failure(receiver, keeper)
                if failure is not None:
                    reason = f"error: {type(failure).__name__}: {failure}"
                ended = self.clock.now()
                session = status.session if status.session is not None else session
                self.sessions.end(session, ended, reason)  # the newest, after a split
                log.info(
                    "event=disconnect conn=%d reason=%s session=%s",
                    status.id,
                    logfmt(reason),
                    session,
                )
        if failure is not None:
            raise failure
        received = status.frames_received > received_before
        return received and ended - started >= self.config.healthy_after

    def split_sessions(self, lost_from: float, lost_until: float, reason: str) -> int:
        """Cut every open session at ``lost_from`` and go on in a new one from
        ``lost_until``: the frames between were received but lost (the journal refused
        them), so the coverage has a gap there. Returns how many sessions were cut."""
        cut = 0
        for status in self.connections:
            if status.state is not ConnectionState.OPEN or status.session is None:
                continue
            self.sessions.end(status.session, lost_from, reason)
            url, symbols = self.config.url, status.symbols
            status.session = self.sessions.start(status.id, url, symbols, lost_until)
            cut += 1
        return cut

    async def _receive(self, ws: ClientConnection, status: ConnectionStatus) -> None:
        """Hand every message to ``on_frames``; ends only by an exception."""
        recv, queue = ws.recv, _frame_queue(ws)
        while True:
            batch = [await recv()]
            try:
                for _ in range(len(queue) if queue is not None else 0):
                    batch.append(await recv())  # buffered: returns without suspending
            finally:  # a batch read is delivered even if the connection broke meanwhile
                self._deliver(batch, status)

    def _deliver(self, batch: list[str | bytes], status: ConnectionStatus) -> None:
        if batch:
            now = self.clock.now()
            status.last_frame_at = now
            status.frames_received += len(batch)
            self._on_frames(batch, int(now * 1e6), status.id)

    async def _keep(self, ws: ClientConnection, status: ConnectionStatus, started: float) -> str:
        """Subscribe, resubscribe on schedule, and watch for silence; returns a stale reason."""
        config, clock = self.config, self.clock
        subscribe = json.dumps({"subscribe": list(status.symbols)}, separators=(",", ":"))
        await ws.send(subscribe)
        resubscribe_at = started + config.resubscribe_every
        quiet_since = started  # silence is counted from here or the last frame, the later
        check_every = config.stale_after / 4  # how often closed markets are looked at
        while True:
            now = clock.now()
            heard = max(status.last_frame_at or started, quiet_since)
            wake = min(resubscribe_at, heard + config.stale_after, now + check_every)
            await clock.sleep(wake - now)
            now = clock.now()
            if now >= resubscribe_at:
                await ws.send(subscribe)
                resubscribe_at = now + config.resubscribe_every
            if not any(is_open(c, now) for c in status.classes):
                quiet_since = now  # a closed market is quiet, not stale
                continue
            silent_for = now - max(status.last_frame_at or started, quiet_since)
            if silent_for >= config.stale_after:
                log.warning("event=stale conn=%d silent_for=%.1f", status.id, silent_for)
                return f"stale: no data for {round(silent_for, 1):g} s"


def _failure(*tasks: asyncio.Task[Any]) -> Exception | None:
    """The first error (not a closed connection, not a cancellation) among finished tasks."""
    for task in tasks:
        if task.done() and not task.cancelled():
            exc = task.exception()
            if isinstance(exc, Exception) and not isinstance(exc, ConnectionClosed):
                return exc
    return None


def _end_reason(receiver: asyncio.Task[None], keeper: asyncio.Task[str]) -> str:
    """Why a session ended by itself: an error, a stale verdict or a dropped socket."""
    failure = _failure(receiver, keeper)
    if failure is not None:
        return f"error: {type(failure).__name__}: {failure}"
    if keeper.done() and not keeper.cancelled() and keeper.exception() is None:
        return keeper.result()
    closed = [t.exception() for t in (receiver, keeper) if t.done() and not t.cancelled()]
    return f"dropped: {closed[0]}" if closed else "stopped"


async def _close(ws: ClientConnection) -> None:
    """Close with code 1000 within ``CLOSE_TIMEOUT`` (+ 1 s), even if the peer stopped
    reading (websockets bounds the handshake, not the flush before it)."""
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 1.0)
    except TimeoutError:
        ws.transport.abort()


def _frame_queue(ws: ClientConnection) -> Sized | None:
    """websockets' buffer of received frames, when this version exposes it."""
    queue = getattr(getattr(ws, "recv_messages", None), "frames", None)
    return queue if isinstance(queue, Sized) else None
