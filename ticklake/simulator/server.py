"""The simulator's WebSocket server: handshake, subscriptions, pacing and fan-out.

A stand-in for ``wss://streamer.finance.yahoo.com``: v1 at ``/``, v2 at ``/?version=2``,
any other path or query is refused with HTTP 404 during the handshake. Clients send
``{"subscribe": [...]}`` / ``{"unsubscribe": [...]}`` (see ``protocol``); there is no
acknowledgement, and anything unusable is logged and ignored.

Invariants:
- one :class:`~ticklake.simulator.feed.Feed` serves every connection, so all subscribers of
  a symbol get the same ticks, and a subscribe first re-sends the symbol's latest tick
  (possibly old) when it has one, as Yahoo does;
- a connection holds at most ``max_symbols`` subscriptions; further ones are ignored;
- in burst mode (``burst``) there is no pacing: each connection streams as fast as its
  client reads;
- pacing uses the real event loop (``asyncio.sleep``) every ``TICK_SECONDS``, in batches;
  event times and market hours come from the injected clock, so a ManualClock parked on a
  Sunday makes equities silent while real time still paces crypto.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from typing import Final, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from lake.clock import Clock, SystemClock
from lake.logfmt import logfmt
from ticklake.simulator.burst import BurstSender
from ticklake.simulator.config import SimulatorConfig
from ticklake.simulator.connection import SentLog, SimConnection
from ticklake.simulator.feed import Feed, Tick
from ticklake.simulator.protocol import parse_request, version_of

__all__ = ["Simulator", "SimulatorListenError", "serve_forever"]

log = logging.getLogger(__name__)
TICK_SECONDS: Final = 0.02  # real seconds between two batches of generated ticks
MAX_ELAPSED: Final = 1.0  # a stalled event loop catches up at most this much at once


class SimulatorListenError(OSError):
    """The simulator could not bind its address (port taken, host not local, ...)."""


class Simulator:
    """The simulator's server, started by ``async with`` (or :meth:`in_thread` for sync code)."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.frames_sent = 0
        self._feed = Feed(self.config.seed, self.config.rate)
        self._subscribers: dict[str, set[SimConnection]] = {}
        self._connections: dict[int, SimConnection] = {}
        self._next_id = 1
        self._server: Server | None = None
        self._pump: asyncio.Task[None] | None = None
        self._sent_log: SentLog | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The v2 endpoint, the recorder's default."""
        return f"{self.url_v1}?version=2"

    @property
    def url_v1(self) -> str:
        host = self.config.host
        return f"ws://{f'[{host}]' if ':' in host else host}:{self._port}/"

    @property
    def connections(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    async def start(self) -> None:
        if self.config.sent_log is not None:
            self._sent_log = SentLog(self.config.sent_log)
        try:
            self._server = await serve(
                self._handle,
                self.config.host,
                self.config.port,
                process_request=_check_path,
                compression=None,
                ping_interval=20,
                close_timeout=2,
            )
        except OSError as exc:
            await self.stop()
            address = f"{self.config.host}:{self.config.port}"
            raise SimulatorListenError(
                f"cannot listen on {address}: {exc.strerror or exc}; "
                "choose another --port (0 picks a free one)"
            ) from exc
        self._port = self._server.sockets[0].getsockname()[1]
        if not self.config.burst:  # burst connections make their own ticks
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())
        log.info(
            "event=sim_listening url=%s seed=%d rate=%s burst=%s",
            logfmt(self.url_v1),
            self.config.seed,
            self.config.rate,
            str(self.config.burst).lower(),
        )

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._sent_log is not None:
            self._sent_log.close()
            self._sent_log = None
        log.info("event=sim_stopped frames_sent=%d", self.frames_sent)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls, config: SimulatorConfig | None = None, clock: Clock | None = None
    ) -> Iterator[Simulator]:
        """Run a simulator on its own event loop in a background thread, for sync code."""
        sim = cls(config, clock)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="ticklake-simulator", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=30)
            yield sim
        finally:
            try:
                asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()

    async def _run_pump(self) -> None:
        """Every tick of the loop: generate the due ticks and hand them to their subscribers."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            elapsed, last = min(now - last, MAX_ELAPSED), now
            if self._subscribers:
                try:
                    self._fan_out(self._feed.advance(elapsed, self.clock.now(), self._subscribers))
                except Exception:
                    log.exception("event=sim_pump_failed")
                    raise

    def _fan_out(self, ticks: list[Tick]) -> None:
        woken: set[SimConnection] = set()
        for tick in ticks:
            for connection in self._subscribers[tick.symbol]:
                connection.enqueue(tick)
                woken.add(connection)
        for connection in woken:
            connection.wake()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handshake is done
        version = version_of(ws.request.path)
        assert version is not None  # _check_path refused every other path
        connection = SimConnection(
            ws, self._next_id, version, self.config, self._sent_log, self._count_sent
        )
        self._next_id += 1
        self._connections[connection.id] = connection
        log.info("event=sim_connect connection=%d version=%d", connection.id, version)
        if self.config.burst:
            burst = BurstSender(connection, self._feed, self.clock, self._count_sent)
            tasks = [asyncio.create_task(burst.run())]
        else:
            tasks = [asyncio.create_task(connection.send_forever())]
        if self.config.drop_every is not None:
            tasks.append(asyncio.create_task(connection.drop_after(self.config.drop_every)))
        if self.config.stall_after is not None:
            tasks.append(asyncio.create_task(connection.stall_after(self.config.stall_after)))
        try:
            async for message in _messages(ws):
                self._on_message(connection, message)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._unsubscribe(connection, list(connection.symbols))
            del self._connections[connection.id]
            log.info(
                "event=sim_disconnect connection=%d overflowed=%d",
                connection.id,
                connection.overflowed,
            )

    def _count_sent(self, frames: int) -> None:
        self.frames_sent += frames

    def _on_message(self, connection: SimConnection, message: str | bytes) -> None:
        actions, problems = parse_request(message)
        for problem in problems:
            log.warning(
                "event=sim_bad_message connection=%d problem=%s", connection.id, logfmt(problem)
            )
        for action, symbols in actions:
            if action == "subscribe":
                self._subscribe(connection, symbols)
            else:
                self._unsubscribe(connection, symbols)

    def _subscribe(self, connection: SimConnection, symbols: list[str]) -> None:
        ignored = 0
        for symbol in symbols:
            if symbol in connection.symbols:
                continue
            if len(connection.symbols) >= self.config.max_symbols:
                ignored += 1
                continue
            connection.symbols.add(symbol)
            self._subscribers.setdefault(symbol, set()).add(connection)
            latest = self._feed.latest(symbol)
            if latest is not None:
                connection.enqueue(latest)
        connection.wake()
        log.log(
            logging.WARNING if ignored else logging.INFO,
            "event=sim_subscribe connection=%d requested=%d subscribed=%d ignored_over_cap=%d",
            connection.id,
            len(symbols),
            len(connection.symbols),
            ignored,
        )

    def _unsubscribe(self, connection: SimConnection, symbols: list[str]) -> None:
        for symbol in symbols:
            connection.symbols.discard(symbol)
            subscribers = self._subscribers.get(symbol)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self._subscribers[symbol]


async def _messages(ws: ServerConnection) -> AsyncIterator[str | bytes]:
    """The client's messages until it goes away, however it goes."""
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            yield message


def _check_path(connection: ServerConnection, request: Request) -> Response | None:
    """Refuse (HTTP 404) anything but ``/`` (v1) and ``/?version=2`` (v2)."""
    if version_of(request.path) is not None:
        return None
    log.info("event=sim_not_found path=%s", logfmt(request.path[:200]))
    return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")


async def serve_forever(config: SimulatorConfig, clock: Clock | None = None) -> None:
    """Run the simulator until cancelled; prints its address (CLI output) once listening."""
    async with Simulator(config, clock) as sim:
        print(f"simulator listening on {sim.url_v1} (v2: {sim.url})", flush=True)
        await asyncio.Event().wait()
