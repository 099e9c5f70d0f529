"""How much slower than its calibration a job really ran here: the correction the sweep estimate applies.

A calibration (``dpcore.engine.speed``) times bare optimizer steps in the calling process. A queued job also
pays what the calibration does not see: its worker process's threads, the per-step writes to the run store
and the machine's load while it runs. ``observed_factor`` compares the training time (``summary['seconds']``,
so a worker's one-off start-up is left out) of the most recent comparable finished runs (same dataset,
model, batch size and privacy, finished within ``RECENT_S``) with what the calibration predicts for them;
the estimate multiplies by it. A worker process's first job (``summary['worker_job'] == 1``) is left out: its
one-off warm-ups (first Opacus step, first dataset load) made it several times slower than the jobs after it.
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import datetime

from dpcore.engine.speed import Speed, run_seconds
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RunStore

#: Finished runs older than this (s) say nothing about the machine's load now.
RECENT_S = 1800.0
#: Comparable runs looked at (newest first).
MAX_RUNS = 5


def _stamp(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def observed_factor(store: RunStore, speed: Speed, *, dataset: str, model: str, batch_size: int, private: bool,
                    now: float | None = None, recent_s: float = RECENT_S) -> tuple[float, int] | None:
    """``(median of training time / calibrated prediction, runs used)`` over the newest ``MAX_RUNS`` comparable runs
    that finished within ``recent_s`` seconds of ``now`` (POSIX s), leaving out a worker's first (cold) job; None
    when there are none."""
    now = time.time() if now is None else now
    ratios: list[float] = []
    for record in store.records(kind="train", status=DONE):  # newest first
        run = StoredRun.from_record(record)
        if (run.dataset, run.model, run.private) != (dataset, model, private):
            continue
        if int(record.config.get("batch_size") or 0) != int(batch_size) or run.summary.get("worker_job") == 1:
            continue
        finished, trained = _stamp(record.finished), run.summary.get("seconds")
        if finished is None or now - finished > recent_s or run.steps <= 0 or not trained:
            continue
        epochs = run.epochs_done if math.isfinite(run.epochs_done) else 1
        predicted = run_seconds(speed, steps=run.steps, epochs=int(epochs), attack=False, overhead_s=0.0)
        if predicted > 0:
            ratios.append(float(trained) / predicted)
        if len(ratios) >= MAX_RUNS:
            break
    return (statistics.median(ratios), len(ratios)) if ratios else None


__all__ = ["MAX_RUNS", "RECENT_S", "observed_factor"]
