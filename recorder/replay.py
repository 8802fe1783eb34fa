"""``ticklake replay``: rebuild the lake's ticks from the journal.

Replay applies journal records through :class:`recorder.ingest.Ingest`, the very path live
recording takes, so it produces exactly what live recording produced:

- into the recorder's own lake (the default), replay is idempotent: rows already there stay,
  anything missing (a lake file lost or deleted) comes back;
- ``into`` another directory, replay builds a fresh lake from the journal alone: after a
  decoder fix, build it there, check it, and swap it in while the recorder is stopped.

``start_us``/``end_us`` select frames by receive time. The journal's lock is taken, so replay
refuses to run beside a recorder writing the same journal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lake.datadir import journal_dir
from lake.minutes import clean_temporaries
from lake.quarantine import Quarantine
from lake.seal import load_seal, save_seal
from recorder.ingest import Ingest, IngestStats
from recorder.journal import Journal

log = logging.getLogger(__name__)


def replay(
    data: Path,
    now_ms: int,
    start_us: int | None = None,
    end_us: int | None = None,
    into: Path | None = None,
) -> IngestStats:
    target = into or data
    stats = IngestStats()
    with Journal.open(journal_dir(data)) as journal:  # the lock: no recorder beside us
        target.mkdir(parents=True, exist_ok=True)
        clean_temporaries(target)
        seal = load_seal(target)
        applied = seal.applied_seq
        quarantine = Quarantine(target)
        ingest = Ingest(target, seal, quarantine)
        if start_us is None and end_us is None:
            batches = journal.iter_records()
        else:
            batches = journal.iter_records_between(start_us or 0, end_us or (1 << 62))
        for records in batches:
            stats.add(ingest.apply_records(records, now_ms))
            log.info("event=replay_progress applied_seq=%d", records[-1].seq)
        quarantine.close()
        if start_us is not None or end_us is not None:
            seal.applied_seq = applied  # a partial replay must not skip frames after its range
        save_seal(target, seal)
    return stats
