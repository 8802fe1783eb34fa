"""Yahoo frames as the feed sends them: a base64 ``PricingData`` (v1) or that inside a JSON
envelope (v2, ``{"type":"pricing","message":...}``)."""

from __future__ import annotations

import base64
from typing import Any

from lake.pricing_pb2 import PricingData

HEARTBEAT = '{"type":"heartbeat"}'
"""Another v2 message type: skipped, never an error."""


def pricing(
    symbol: str | None, time_ms: int | None, price: float = 100.25, **fields: Any
) -> PricingData:
    """A message; ``symbol`` or ``time_ms`` None leaves that field unset."""
    message = PricingData(price=price, **fields)
    if symbol is not None:
        message.id = symbol
    if time_ms is not None:
        message.time = time_ms
    return message


def v1(message: PricingData) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def envelope(text: str) -> str:
    """``text`` as a v2 pricing frame's message, verbatim."""
    return '{"type":"pricing","message":"' + text + '"}'


def v2(message: PricingData) -> str:
    return envelope(v1(message))
