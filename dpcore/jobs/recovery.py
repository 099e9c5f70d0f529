"""What a restarted app does with the runs its previous process left behind (besides sweeps).

``requeue_baselines`` queues again the non-private baselines that were still waiting when the
server stopped: they were queued automatically next to a private run, so the comparison would
otherwise be missing for good. (Sweeps continue in ``dpcore.jobs.sweep.resume_after_restart``;
a run that had started keeps its checkpoint and is continued on request.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.jobs.training import link_baseline
from dpcore.store.records import StoredRun
from dpcore.store.runs import INTERRUPTED, RunActive, RunNotFound

if TYPE_CHECKING:
    from dpcore.jobs.queue import JobQueue

log = logging.getLogger(__name__)


def requeue_baselines(queue: JobQueue) -> dict[str, str]:
    """Queue again every baseline interrupted before it started; return ``{old run id: new run id}``.

    A baseline here is a non-private training run queued for a private run (``summary['baseline_for']``)
    that never started (no start time) and was marked interrupted because its process is gone. The
    old record is deleted (the delete is the claim, so two restarting processes never queue it twice),
    a new run with the same config and name is queued, and the private run is linked to it.
    """
    store = queue.store
    store.recover()  # queued runs of a process that is gone become 'interrupted'
    moved: dict[str, str] = {}
    for record in store.records(kind="train", status=INTERRUPTED):
        run = StoredRun.from_record(record)
        if record.started is not None or run.private or run.baseline_for is None:
            continue
        try:
            store.delete(record.id)
        except (RunNotFound, RunActive):  # another process claimed it first
            continue
        try:
            new_id = queue.submit(TrainConfig.from_dict(record.config), name=record.name)
        except DPExplorerError as err:  # queue full or closed: submit it again from its run's page
            log.warning("baseline %s (for run %s) could not be queued again: %s", record.id, run.baseline_for, err)
            continue
        if store.exists(run.baseline_for):
            link_baseline(store, run.baseline_for, new_id)
        moved[record.id] = new_id
        log.info("baseline %s was waiting when the server stopped: queued again as %s", record.id, new_id)
    return moved


__all__ = ["requeue_baselines"]
