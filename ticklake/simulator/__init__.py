"""A faithful stand-in for Yahoo! Finance's streamer, for the demo, tests and benchmarks.

It speaks the real protocol byte for byte (v1 bare base64 frames at ``/``, v2 JSON envelopes
at ``/?version=2``, ``PricingData`` serialized with proto3 rules), streams seeded random
walks per symbol during each market's hours (``recorder.wire.markets``), and injects faults on
request: dropped and stalled connections, garbage, duplicate, out-of-order and late frames.

    async with Simulator(SimulatorConfig(rate=5, seed=1), clock=clock) as sim:
        sim.url  # ws://127.0.0.1:<port>/?version=2

Modules: ``config`` (settings and CLI flags), ``feed`` (price walks into ticks), ``frames``
(ticks into frames, with faults), ``protocol`` (endpoints, client requests), ``connection``
(one client), ``server`` (the server), ``burst`` (``--burst``: a connection streaming as
fast as its client reads, for benchmarks) and ``wire`` (its NumPy encoder).
"""

from ticklake.simulator.config import (
    SimulatorConfig,
    SimulatorConfigError,
    add_arguments,
    config_from_args,
)
from ticklake.simulator.server import Simulator, SimulatorListenError, serve_forever

__all__ = [
    "Simulator",
    "SimulatorConfig",
    "SimulatorConfigError",
    "SimulatorListenError",
    "add_arguments",
    "config_from_args",
    "serve_forever",
]
