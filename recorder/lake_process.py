"""The lake writer in a process of its own, beside the receive loop.

The receive loop runs Python on every frame (websockets' parser, the journal), and so does
decoding. In one process they take turns on one interpreter lock, and in a burst the lake
falls behind while a core sits idle. :class:`LakeProcess` runs a
:class:`~recorder.lake_writer.LakeWriter` in a child process: each cycle's
:class:`~recorder.lake_writer.Work` goes down a pipe, its
:class:`~recorder.lake_writer.Report` comes back, with the log lines the child wrote, which
the parent logs as its own (one log stream, whatever the configuration).

Invariants:
- the child is forked from the parent's main thread (it inherits the parent's modules and
  settings) and closes every descriptor it inherited but its pipe; it ignores SIGINT and
  stops its long steps on SIGTERM (:meth:`LakeProcess.halt`);
- a child that dies (killed, out of memory) raises :class:`LakeWriterLost` in the parent;
  the next :meth:`LakeProcess.submit` starts a new one, which replays from the journal what
  the lake lacks, as any start does;
- a failpoint reached in the child kills the parent too: a crash test's "the machine lost
  power here" stays true;
- a child outlives neither its parent (SIGKILL on the parent's death, Linux's
  ``PR_SET_PDEATHSIG``) nor :meth:`LakeProcess.close`;
- the child never imports pandas (pyarrow imports it on its first array when it is
  installed: ~45 MB of a process for nothing here);
- the child gives freed memory back to the system after every cycle (issue 11: 5,000
  symbols under 300 MB): Arrow allocates from the C library's heap, not mimalloc's (which
  keeps a fold's pages), and ``malloc_trim`` returns the heap's free pages, which a
  cycle's many small allocations otherwise scatter and pin (measured: a first cycle grew
  the heap by 200 MB that ``malloc_trim`` gives back).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.abc
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import ModuleType
from typing import Final

import pyarrow as pa

from lake import failpoints
from lake.errors import LakeError, LakeStopped, first_line
from lake.recent import RECENT
from recorder.ingest import IngestStats
from recorder.journal import JournalError
from recorder.lake_writer import LakeWriter, Report, Work, WriterConfig

__all__ = ["LakeProcess", "LakeWriterLost"]

log = logging.getLogger(__name__)
NAME: Final = "ticklake-lake"
_PR_SET_PDEATHSIG: Final = 1


class LakeWriterLost(LakeError):
    """The lake writer process died; the next cycle starts a new one."""


class LakeProcess:
    """A :class:`LakeWriter` in a child process; one :meth:`submit` at a time."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self._context = multiprocessing.get_context("fork")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child unless it runs. Call it from the main thread: the child dies
        with the thread that forked it."""
        with self._lock:
            self._ensure_started()

    def submit(self, work: Work) -> Report:
        """Run one cycle in the child and wait for its report (blocking: call it in a
        thread, after :meth:`start`)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LakeWriterLost("the lake writer process is not running")
            try:
                conn.send(work)
                report: Report = conn.recv()
            except (EOFError, OSError) as exc:
                code = self._reap()
                raise LakeWriterLost(
                    f"the lake writer process died (exit code {code}); a new one replays "
                    "from the journal"
                ) from exc
        for name, level, message in report.logs:
            logging.getLogger(name).log(level, message)
        return report

    def halt(self) -> None:
        """Ask the child to stop its long steps (shutting down); safe from any thread."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def close(self, timeout: float) -> None:
        """End the child: ask, wait up to ``timeout`` s, then kill it (the journal keeps
        whatever it had not written)."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError):
            conn.send(None)
        process.join(timeout)
        if process.is_alive():
            log.warning("event=lake_writer_killed after_s=%g", timeout)
            process.kill()
            process.join()
        conn.close()

    def _ensure_started(self) -> Connection:
        if self._conn is not None:
            return self._conn
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self.config, os.getpid()), name=NAME, daemon=True
        )
        process.start()
        child.close()
        self._conn, self._process = parent, process
        return parent

    def _reap(self) -> int | None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.join(5.0)
        if process.is_alive():
            process.kill()
            process.join()
        return process.exitcode


# -- the child ---------------------------------------------------------------------------------
class _Captured(logging.Handler):
    """Keeps the child's log records for the next report."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))

    def take(self) -> list[tuple[str, int, str]]:
        records, self.records = self.records, []
        return records


def _serve(conn: Connection, config: WriterConfig, parent_pid: int) -> None:
    gc.freeze()  # what the fork copied is never collected here (no finalizer closes an fd)
    _die_with_parent(parent_pid)
    signal.set_wakeup_fd(-1)  # the parent's event loop's, closed below
    # Close what the fork copied (the journal's lock, sockets, the pipe's other end): a
    # socket the parent closes must close, and the lock must die with the parent.
    os.closerange(3, conn.fileno())
    os.closerange(conn.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    captured = _Captured()
    logging.getLogger().handlers = [captured]
    failpoints.kill_also(parent_pid)
    RECENT.clear()
    RECENT.max_bytes = 0  # the files' readers (the per-minute job) live in the parent
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _Refused("pandas"))  # pyarrow then takes it for missing
    pa.set_memory_pool(pa.system_memory_pool())  # freed pages go back (see the docstring)
    trim = _heap_trimmer()
    writer = LakeWriter(config)
    signal.signal(signal.SIGTERM, lambda *_: writer.ingest.halt.set())
    try:
        while (work := conn.recv()) is not None:
            report = _cycle(writer, work)
            report.logs = captured.take()
            conn.send(report)
            trim()
    except (EOFError, OSError):
        pass  # the parent is gone
    finally:
        writer.close()


class _Refused(importlib.abc.MetaPathFinder):
    """Makes ``import <package>`` fail as if it were not installed."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == self.package:
            raise ModuleNotFoundError(f"{fullname} is not used here", name=fullname)
        return None


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux), so no writer outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the line above
        os._exit(1)


def _heap_trimmer() -> Callable[[], None]:
    """A call that returns the C heap's free pages to the system (glibc's ``malloc_trim``;
    nothing elsewhere). A few milliseconds per cycle."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda: None

    def trim() -> None:
        malloc_trim(0)

    return trim


def _cycle(writer: LakeWriter, work: Work) -> Report:
    stats, failure, stopped = IngestStats(), "", False
    try:
        stats = writer.cycle(work)
    except LakeStopped:
        stopped = True
    except (LakeError, JournalError, OSError) as exc:
        # A full disk or an unwritable folder: the journal keeps the frames.
        failure = first_line(exc)
    except Exception as exc:  # a fault nobody foresaw: a failed cycle, not a crash loop
        log.exception("event=cycle_error")
        failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    seal = writer.seal
    return Report(stats, seal.watermark_ms, seal.applied_seq, writer.flushed_seq, failure, stopped)
