"""What recent runs really cost here, whole: the history the sweep estimate is built from.

A calibration (``dpcore.engine.speed``) times bare optimizer steps in the calling process (the server). A sweep
member also pays what that does not see: its worker process, the per-step and per-epoch writes to the run store
(progress rows, a checkpoint every epoch), the membership attack and its bound after training, and the machine's
load while it runs. ``recent_costs`` reads each recent comparable finished run's measured wall time from the
record: ``started`` (the queue's dispatcher claimed it) to ``summary['job_ended']`` (a sweep member's job ended,
``dpcore.jobs.sweep.train_member``; ``finished`` for other runs), split into its training
(``summary['ms_per_step']`` x steps: set-up, steps and per-epoch evaluation, scaled by the steps a member takes)
and the rest, a per-run fixed cost. ``member_seconds`` turns them into the wall time of one member of ``steps``
steps.

A worker process's first job (``summary['worker_job'] == 1``) is marked ``cold``; ``member_seconds`` uses cold
runs only when there are no others. Its training took 1.8-2.8x as long per step as the jobs after it (digits, 90
steps, 2-core machine, quiet or beside two busy processes), and measured, those one-off warm-ups (first dataset load,
first noise calibration, first Opacus step) all fall before its second step: 0.38-0.66 s there on a quiet machine
against 0.04-0.2 s for a warm member, while its epochs then took as long as a warm run's (14-26 ms each). Its whole
per-step figure over-stated a member by 60-80 % (the sweep estimate, meeting a calibration halfway, +8...+38 %). So
a cold run's cost is its ``summary['warm_ms_per_step']`` (``dpcore.jobs.training.ProgressWriter``: the time per step
after the first, per-epoch evaluation and checkpoints included) and, for ``fixed_s``, its ``summary['job_began']``
(the job's start in the worker, after the worker's own start, which its ``started`` also counts) to its job's end,
less its training; ``member_seconds`` adds the set-up the caller gives (the sweep estimate: its calibration's,
timed on a second build). A cold run recorded without ``warm_ms_per_step`` is left out: its per-step figure
carries the warm-ups.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime

from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RunRecord, RunStore

#: Finished runs older than this (s) say nothing about the machine's load now.
RECENT_S = 1800.0
#: Comparable runs looked at (newest first).
MAX_RUNS = 5


@dataclass(frozen=True)
class RunCost:
    """One finished run's measured cost: ``ms_per_step`` (its training time per optimizer step, ms, set-up and
    per-epoch evaluation included), ``fixed_s`` (s of its whole wall time outside training: dispatch, the
    membership attack and bound, writing) and ``cold`` (a worker process's first job, slowed by one-off warm-ups
    before its second step: ``ms_per_step`` is then the time per step after the first, set-up left out)."""

    ms_per_step: float
    fixed_s: float
    cold: bool = False


def _stamp(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def job_seconds(record: RunRecord, *, since: str | None = None) -> float | None:
    """Whole wall time (s) of a run's job: the dispatcher's start (``started``; or the summary's stamp ``since``,
    e.g. ``'job_began'``) to the job's end (``summary['job_ended']``, written by a sweep member after its attack and
    bound; else ``finished``); None when either time is missing."""
    started = _stamp(record.started if since is None else record.summary.get(since))
    ended = _stamp(record.summary.get("job_ended")) or _stamp(record.finished)
    return None if started is None or ended is None else ended - started


def _cost(record: RunRecord, run: StoredRun) -> RunCost | None:
    """The run's ``RunCost``; None when its record lacks the times."""
    ms, trained, wall = run.summary.get("ms_per_step"), run.summary.get("seconds"), job_seconds(record)
    if not ms or not trained or wall is None or float(ms) <= 0:
        return None
    if run.summary.get("worker_job") == 1:  # its set-up paid one-off warm-ups, its started the worker's start
        warm, job = run.summary.get("warm_ms_per_step"), job_seconds(record, since="job_began")
        if not warm or float(warm) <= 0:
            return None
        return RunCost(ms_per_step=float(warm), fixed_s=0.0 if job is None else max(0.0, job - float(trained)),
                       cold=True)
    return RunCost(ms_per_step=float(ms), fixed_s=max(0.0, wall - float(trained)))


def recent_costs(store: RunStore, *, dataset: str, model: str, batch_size: int, private: bool,
                 now: float | None = None, recent_s: float = RECENT_S) -> list[RunCost]:
    """``RunCost`` of the newest ``MAX_RUNS`` finished training runs of ``dataset``/``model`` with this batch size and
    privacy that finished within ``recent_s`` seconds of ``now`` (POSIX s), newest first (a worker's first job
    marked ``cold``), leaving out runs whose record lacks the times."""
    now = time.time() if now is None else now
    costs: list[RunCost] = []
    for record in store.records(kind="train", status=DONE):  # newest first
        run = StoredRun.from_record(record)
        if (run.dataset, run.model, run.private) != (dataset, model, private):
            continue
        if int(record.config.get("batch_size") or 0) != int(batch_size):
            continue
        finished = _stamp(record.finished)
        if finished is None or now - finished > recent_s:
            continue
        cost = _cost(record, run)
        if cost is not None:
            costs.append(cost)
        if len(costs) >= MAX_RUNS:
            break
    return costs


def member_seconds(costs: list[RunCost], *, steps: int, setup_s: float = 0.0) -> float | None:
    """Wall time (s) of one run of ``steps`` optimizer steps at the measured ``costs``: median fixed cost + steps x
    median ms per step / 1000 (medians: one run slowed by a burst of load does not set it), over the warm runs when
    there are any, else the cold ones plus ``setup_s`` (s before a member's first step, which a cold run's figures
    leave out); None without costs.

    >>> member_seconds([RunCost(ms_per_step=10.0, fixed_s=0.5), RunCost(ms_per_step=30.0, fixed_s=0.1),
    ...                 RunCost(ms_per_step=20.0, fixed_s=0.3)], steps=100)
    2.3
    """
    costs = [c for c in costs if not c.cold] or costs
    if not costs:
        return None
    per_step = statistics.median(c.ms_per_step for c in costs) / 1000.0
    setup = max(0.0, float(setup_s)) if costs[0].cold else 0.0
    return round(setup + statistics.median(c.fixed_s for c in costs) + max(0, int(steps)) * per_step, 6)


__all__ = ["MAX_RUNS", "RECENT_S", "RunCost", "job_seconds", "member_seconds", "recent_costs"]
