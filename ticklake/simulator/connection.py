"""One client connection of the simulator: its subscriptions, outbox, sender and faults.

Invariants:
- ticks reach a connection only through its outbox; the sender turns each batch into frames
  (``frames.FrameMaker``) and sends them in order, skipping symbols unsubscribed meanwhile;
- a stalled connection never sends another data frame (the websockets library still
  answers pings, like a live server whose upstream is stuck); a dropped connection is
  aborted at the TCP level, without a close frame;
- the sent log holds exactly the frames handed to the socket, one JSON line each, flushed
  once per chunk; a chunk that fails with the connection is not logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ticklake.simulator.config import SimulatorConfig
from ticklake.simulator.feed import Tick
from ticklake.simulator.frames import Frame, FrameMaker

__all__ = ["SentLog", "SimConnection"]

log = logging.getLogger(__name__)
OUTBOX_LIMIT: Final = 200_000  # ticks queued for a client that reads too slowly
SEND_CHUNK: Final = 1000  # frames written to the socket at once


class SentLog:
    """The ``--sent-log`` file: one JSON object per frame sent, appended."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, connection_id: int, sent_at: float, frames: list[Frame]) -> None:
        lines = []
        for frame in frames:
            entry: dict[str, object] = {
                "frame": frame.text,
                "connection": connection_id,
                "sent_at": sent_at,
                "symbol": frame.symbol,
            }
            if frame.garbage:
                entry["garbage"] = True
            lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.write("".join(lines))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class SimConnection:
    """A client: ``symbols`` it subscribed to and the ticks still to be sent to it."""

    def __init__(
        self,
        ws: ServerConnection,
        connection_id: int,
        version: int,
        config: SimulatorConfig,
        sent_log: SentLog | None,
        on_sent: Callable[[int], None],
    ) -> None:
        self.ws, self.id, self.version = ws, connection_id, version
        self.symbols: set[str] = set()
        self.stalled = False
        self.overflowed = 0
        self._outbox: list[Tick] = []
        self._wake = asyncio.Event()
        self._maker = FrameMaker(config, version, connection_id)
        self._sent_log, self._on_sent = sent_log, on_sent

    def enqueue(self, tick: Tick) -> None:
        """Queue a tick; call :meth:`wake` after a batch of enqueues."""
        if self.stalled:
            return
        if len(self._outbox) >= OUTBOX_LIMIT:
            self.overflowed += 1
            return
        self._outbox.append(tick)

    def wake(self) -> None:
        self._wake.set()

    def take_outbox(self) -> list[Tick]:
        """The queued ticks, removed from the outbox (for a sender of its own: burst mode)."""
        ticks, self._outbox = self._outbox, []
        self._wake.clear()
        return ticks

    async def send_forever(self) -> None:
        """Send queued ticks as they come, until the client goes (or a bug aborts it)."""
        try:
            await self._send_forever()
        except ConnectionClosed:
            return
        except Exception:
            log.exception("event=sim_sender_failed connection=%d", self.id)
            self.ws.transport.abort()  # a client would rather reconnect than wait forever
            raise

    async def _send_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ticks, self._outbox = self._outbox, []
            if self.stalled:
                continue
            symbols = self.symbols
            frames = self._maker.frames(tick for tick in ticks if tick.symbol in symbols)
            if frames:
                await self._send(frames)

    async def _send(self, frames: list[Frame]) -> None:
        """Send in chunks, each written to the socket at once (one drain per chunk, not per
        frame: this is what lets one connection carry 50,000 frames a second)."""
        sent_at, ws = time.time(), self.ws
        for start in range(0, len(frames), SEND_CHUNK):
            if self.stalled:
                return
            chunk = frames[start : start + SEND_CHUNK]
            # websockets' own send() does exactly this for a single frame.
            async with ws.send_context():
                for frame in chunk:
                    ws.protocol.send_text(frame.text.encode())
            self._on_sent(len(chunk))
            if self._sent_log is not None:
                self._sent_log.write(self.id, sent_at, chunk)

    async def drop_after(self, seconds: float) -> None:
        """Abort the TCP connection after ``seconds``: no close frame, like a network cut."""
        await asyncio.sleep(seconds)
        log.info("event=sim_drop connection=%d after_s=%s", self.id, seconds)
        self.ws.transport.abort()

    async def stall_after(self, seconds: float) -> None:
        """Stop sending data frames after ``seconds``, forever, while staying connected."""
        await asyncio.sleep(seconds)
        log.info("event=sim_stall connection=%d after_s=%s", self.id, seconds)
        self.stalled = True
        self._outbox.clear()
