"""Burst mode (``--burst``): one connection streams valid ticks as fast as its client reads.

For benchmarks: the rate-paced path costs microseconds per tick (a protobuf message built in
Python, websockets' send path), far below what a receiver can take. Here ticks are made in
chunks of ~``CHUNK_FRAMES`` with NumPy (``SymbolFeed.next_columns``, ``wire``) and the
finished WebSocket frames are written straight to the transport.

Invariants:
- after a subscribe, the connection sends round after round of one new tick of every
  subscribed symbol whose market is open (``rate`` is ignored), continuing each symbol's
  walk in the shared :class:`~ticklake.simulator.feed.Feed`: a symbol's n-th tick is the
  one the paced mode would send, its latest tick is what a later subscribe re-sends, and two
  connections subscribed to one symbol each get different ticks of it;
- event time is the clock's whole second when a chunk is made, well under a second before
  a reader that keeps up reads it, so minutes fill like a live feed's; ticks are distinct
  wherever the asset class carries a volume (equities, ETFs, futures: the day's volume
  rises with every tick; crypto: the rolling 24 h volume walks on), while two FX or index
  ticks of one second may repeat, as Yahoo's do;
- a chunk is written only while the transport buffers less than ``LOW_WATER`` bytes, so a
  slow reader bounds the memory used; nothing is written once the WebSocket is no longer
  open (the close handshake, pings and pongs stay websockets'), nor once stalled;
- the snapshots a subscribe queues go out first, before the next chunk; the sent log is not
  kept (``SimulatorConfig`` refuses it, and every fault but drops and stalls).
"""

from __future__ import annotations

import asyncio
import math
from base64 import b64encode
from collections.abc import Callable
from typing import Any, Final

import numpy.typing as npt
from websockets.protocol import State

from lake.clock import Clock
from lake.pricing_pb2 import PricingData
from recorder.wire.markets import AssetClass, market_hours, session_id
from ticklake.simulator.connection import SimConnection
from ticklake.simulator.feed import Feed, Tick
from ticklake.simulator.frames import v2_frame
from ticklake.simulator.wire import encode, field_bytes, text_frame

__all__ = ["CHUNK_FRAMES", "LOW_WATER", "BurstSender"]

CHUNK_FRAMES: Final = 16_384  # frames made and written at once (~3 MB of v2 frames)
LOW_WATER: Final = 1 << 20  # write the next chunk once the transport buffers less
WAIT: Final = 0.001  # seconds between looks at a full buffer
IDLE: Final = 0.02  # seconds between looks when nothing can be sent


class BurstSender:
    """Streams one connection's subscribed symbols as fast as its socket accepts."""

    def __init__(
        self, connection: SimConnection, feed: Feed, clock: Clock, on_sent: Callable[[int], None]
    ) -> None:
        self.connection, self.feed, self.clock = connection, feed, clock
        self._on_sent = on_sent
        self._statics: dict[str, dict[int, bytes]] = {}  # symbol -> its template's fields

    async def run(self) -> None:
        """Send until the WebSocket stops being open (the caller cancels it at disconnect)."""
        ws = self.connection.ws
        transport = ws.transport
        while ws.protocol.state is State.OPEN and not transport.is_closing():
            if self.connection.stalled or transport.get_write_buffer_size() >= LOW_WATER:
                await asyncio.sleep(WAIT)
                continue
            snapshots, count = self._snapshots()
            chunk, made = self._chunk()
            if not count + made:
                await asyncio.sleep(IDLE)
                continue
            transport.write(snapshots + chunk if snapshots else chunk)
            self._on_sent(count + made)
            await asyncio.sleep(0)  # let the client's requests and pings in

    def _snapshots(self) -> tuple[bytes, int]:
        """The frames of the ticks queued by subscribes (latest snapshots), still subscribed."""
        symbols = self.connection.symbols
        ticks = [t for t in self.connection.take_outbox() if t.symbol in symbols]
        if self.connection.version == 2:
            return b"".join(text_frame(v2_frame(t.b64)) for t in ticks), len(ticks)
        return b"".join(text_frame(t.b64) for t in ticks), len(ticks)

    def _chunk(self) -> tuple[bytes, int]:
        """One round-robin chunk of new ticks of every open subscribed symbol."""
        t = self.clock.now()
        time_ms = math.floor(t) * 1000
        markets: dict[AssetClass, tuple[int | None, int]] = {}
        due: list[tuple[str, int, int]] = []
        for symbol in sorted(self.connection.symbols):
            asset = self.feed.symbol(symbol).asset
            if asset not in markets:
                markets[asset] = (market_hours(asset, t), session_id(asset, t))
            hours, session = markets[asset]
            if hours is not None:
                due.append((symbol, hours, session))
        if not due:
            return b"", 0
        per_symbol = max(1, CHUNK_FRAMES // len(due))
        chunk_fields = {hours: _chunk_fields(time_ms, hours) for _, hours, _ in due}
        statics: list[dict[int, bytes]] = []
        columns: list[dict[str, npt.NDArray[Any]]] = []
        for symbol, hours, session in due:
            statics.append(self._static(symbol) | chunk_fields[hours])
            columns.append(self.feed.symbol(symbol).next_columns(per_symbol, hours, session))
        batch = encode(statics, columns, self.connection.version)
        last_round = (per_symbol - 1) * len(due)
        for i, (symbol, _, _) in enumerate(due):
            payload = batch.payload(last_round + i)
            tick = Tick(symbol, time_ms, payload, b64encode(payload).decode())
            self.feed.symbol(symbol).latest = tick
        return batch.frames, per_symbol * len(due)

    def _static(self, symbol: str) -> dict[int, bytes]:
        static = self._statics.get(symbol)
        if static is None:
            static = self._statics[symbol] = field_bytes(self.feed.symbol(symbol).template)
        return static


def _chunk_fields(time_ms: int, hours: int) -> dict[int, bytes]:
    """``time`` and ``market_hours`` (unset when PRE_MARKET, its zero value), encoded."""
    message = PricingData(time=time_ms)
    if hours:
        message.market_hours = hours  # type: ignore[assignment]
    return field_bytes(message)
