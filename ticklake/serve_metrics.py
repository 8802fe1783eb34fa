"""``--metrics-port`` and ``--metrics-host``, shared by ``record`` and ``analyze``, and
binding their server before anything else opens (a taken port is a usage error, not a
recorder that started half-way).

prometheus-client is imported only when a port is asked for: it is the optional
``metrics`` extra.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

from ticklake.config import Option, non_negative_int

if TYPE_CHECKING:
    from ticklake.metrics import MetricsServer

__all__ = ["METRICS_HOST", "METRICS_PORT", "MetricsUnavailable", "bind_metrics"]

METRICS_PORT: Final = Option(
    "metrics_port",
    non_negative_int,
    0,
    "serve /metrics and /healthz on this port (0: off; needs ticklake[metrics])",
    "PORT",
)
METRICS_HOST: Final = Option(
    "metrics_host", str, "127.0.0.1", "address the metrics server binds", "HOST"
)


class MetricsUnavailable(Exception):
    """``--metrics-port`` cannot be served: the extra is missing or the port is taken."""


def bind_metrics(ns: argparse.Namespace) -> MetricsServer | None:
    """The metrics server, bound (not serving yet); None without ``--metrics-port``."""
    if not ns.metrics_port:
        return None
    try:
        from ticklake.metrics import MetricsServer
    except ImportError as exc:
        hint = "needs prometheus-client: pip install 'ticklake[metrics]'"
        raise MetricsUnavailable(f"--metrics-port {hint}") from exc
    try:
        return MetricsServer(ns.metrics_host, ns.metrics_port)
    except OSError as exc:
        address = f"{ns.metrics_host}:{ns.metrics_port}"
        reason = exc.strerror or exc
        raise MetricsUnavailable(f"cannot serve metrics on {address}: {reason}") from exc
