"""Progress of a running job for display: fraction done, elapsed time and ETA from steps and timestamps.

Under Poisson sampling the number of batches per epoch varies, so progress is driven by the
optimizer steps the trainer reports (``RunRecord.steps_done`` / ``total_steps``), never by
``len(loader)``. The ETA uses the step rate between polls when the caller keeps samples, which
leaves out the set-up time (data loading, noise calibration) that precedes the first step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dpcore.store.runs import RunRecord


@dataclass(frozen=True)
class Progress:
    """Where a run stands. Times are in seconds; ``fraction`` in [0, 1]; None where unknown."""

    steps_done: int
    total_steps: int | None
    fraction: float | None
    elapsed_s: float | None
    eta_s: float | None
    steps_per_s: float | None


def parse_time(stamp: str | None) -> float | None:
    """A stored ISO 8601 timestamp as POSIX seconds (None for missing or unreadable stamps)."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def estimate_progress(record: RunRecord, *, now: float | None = None,
                      samples: Sequence[tuple[float, int]] = ()) -> Progress:
    """Progress of ``record`` at POSIX time ``now`` (default: the current time).

    ``samples`` are ``(posix_time, steps_done)`` pairs the caller observed on its polls; the
    rate is measured between the first and the last sample with steps done, and until two
    such samples differ there is no ETA (the first step comes after the set-up, so steps over
    time since the start would overestimate it). Without samples the rate is steps done over
    the time since the run started. Queued runs have no elapsed time and no ETA; stopped runs
    an ETA of 0.

    >>> from dpcore.store.runs import RunRecord
    >>> rec = RunRecord(id="r", name="r", kind="train", group=None, status="running", config={},
    ...                 started="2025-01-01T00:00:00+00:00", steps_done=30, total_steps=120)
    >>> p = estimate_progress(rec, now=parse_time("2025-01-01T00:00:10+00:00"))
    >>> (p.fraction, p.elapsed_s, p.steps_per_s, p.eta_s)
    (0.25, 10.0, 3.0, 30.0)
    """
    now = time.time() if now is None else now
    steps, total = int(record.steps_done or 0), record.total_steps
    fraction = None if not total else min(1.0, steps / total)
    started = parse_time(record.started)
    finished = parse_time(record.finished)
    end = finished if finished is not None and not record.active else now
    elapsed = None if started is None else max(0.0, end - started)

    rate = None
    usable = [(t, s) for t, s in samples if s > 0]
    if len(usable) >= 2 and usable[-1][1] > usable[0][1] and usable[-1][0] > usable[0][0]:
        rate = (usable[-1][1] - usable[0][1]) / (usable[-1][0] - usable[0][0])
    elif not samples and elapsed and steps > 0:
        rate = steps / elapsed

    eta = None
    if not record.active:
        eta = 0.0
    elif total and rate and rate > 0:
        eta = max(0.0, (total - steps) / rate)
    return Progress(steps, total, fraction, elapsed, eta, rate)


#: How much the estimate made before a job started counts, as a share of the job, against the job's own measured
#: speed (``corrected_eta``). 0.03: once a quarter of the job is done, its own speed has 89 % of the say.
PRIOR_WEIGHT = 0.03


def corrected_eta(*, estimate_s: float | None, elapsed_s: float | None, done: float, total: float,
                  prior_weight: float = PRIOR_WEIGHT) -> float | None:
    """Seconds left of a job of ``total`` units (models, runs) with ``done`` units done after ``elapsed_s`` seconds.

    Seconds per unit blend the estimate made before the job started (``estimate_s / total``) with this job's
    own measured time per unit (``elapsed_s / done``), each weighted by the evidence behind it:
    ``(prior_weight x estimated + f x measured) / (prior_weight + f)`` with ``f = done / total``. So the ETA
    follows the machine's real speed (its load) as the job goes on: a job running 2x slower than estimated is
    predicted within 6 % of its real length once a quarter is done. Without an estimate the measured speed
    alone counts. Before anything is done: the estimate less the time elapsed, but at least ``total - 1``
    times the time elapsed once the first unit is overdue (it has taken that long already). 0 when all is
    done; None when neither is known. ``done``/``total`` in any unit.

    >>> round(corrected_eta(estimate_s=100.0, elapsed_s=30.0, done=1, total=4), 1)  # 30 s a unit measured, 25 estimated
    88.4
    >>> corrected_eta(estimate_s=100.0, elapsed_s=20.0, done=0, total=4)
    80.0
    >>> corrected_eta(estimate_s=100.0, elapsed_s=40.0, done=0, total=4)  # the first model is overdue
    120.0
    """
    if total and done >= total:
        return 0.0
    estimated = estimate_s / total if estimate_s is not None and total else None
    if elapsed_s is not None and done > 0 and total:
        measured = elapsed_s / done
        share = done / total
        per_unit = measured if estimated is None else (
            (prior_weight * estimated + share * measured) / (prior_weight + share))
        return max(0.0, per_unit * (total - done))
    if estimate_s is not None:
        elapsed = elapsed_s or 0.0
        return max(0.0, estimate_s - elapsed, (total - 1) * elapsed if total else 0.0)
    return None


def eta_text(eta_s: float | None) -> str:
    """'about 2 min 05 s left', 'less than a second left', or '' for an unknown ETA."""
    if eta_s is None or not math.isfinite(eta_s):
        return ""
    return "less than a second left" if eta_s < 1 else f"about {format_duration(eta_s)} left"


def format_duration(seconds: float | None) -> str:
    """'–' for unknown, else '8 s', '2 min 05 s' or '1 h 04 min'."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


__all__ = ["PRIOR_WEIGHT", "Progress", "corrected_eta", "estimate_progress", "eta_text", "format_duration",
           "parse_time"]
