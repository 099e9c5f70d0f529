"""Estimate vs real wall time of the Attack lab pool and a Tradeoffs sweep (issue 10, part 2). Target: within ±30 %.

Both estimates are the ones the pages show before starting: ``dpcore.jobs.attack.estimate_seconds`` with
``attack_speed`` (this machine's measured speed for the reference models) and ``dpcore.jobs.sweep.estimate``
(calibrated the same way). Each job then runs through ``dpcore.jobs.queue.JobQueue`` and is timed from submit
to its end. The calibration itself (a few steps, once per process) is timed separately and is not part of
either job. Run: ``python bench/bench_estimates.py`` (``--pool-models``, ``--sweep-epochs`` to change sizes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore.config import TrainConfig
from dpcore.jobs import attack as audit
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.queue import JobQueue
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RunStore
from dpcore.views.progress import format_duration

TOLERANCE = 0.30


def _wait_trained(queue: JobQueue, run_id: str) -> StoredRun:
    record = queue.wait(run_id, timeout=900)
    while StoredRun.from_record(record).mia_status == "pending":
        time.sleep(0.05)
        record = queue.store.get(run_id)
    if record.status != DONE:
        raise RuntimeError(f"run {run_id} ended {record.status}: {record.error_message}")
    return StoredRun.from_record(record)


def pool_row(queue: JobQueue, *, n_models: int) -> tuple[float, float, float]:
    """(calibration s, estimate s, real s) of an ``n_models`` attack-lab pool on a digits ε = 3 target."""
    target = _wait_trained(queue, queue.submit(TrainConfig(dataset="digits", target_epsilon=3.0)))
    started = time.perf_counter()
    measured = audit.attack_speed(target.record)
    calibration = time.perf_counter() - started
    speed, config = measured if measured is not None else (None, None)
    estimate = audit.estimate_seconds(target.summary, n_models=n_models, speed=speed, config=config)
    started = time.perf_counter()
    job_id = audit.submit_attack(queue, target.id, n_models=n_models, estimate_s=estimate)
    record = queue.wait(job_id, timeout=1800)
    real = time.perf_counter() - started
    if record.status != DONE:
        raise RuntimeError(f"attack job ended {record.status}: {record.error_message}")
    return calibration, float(estimate or float("nan")), real


def sweep_row(queue: JobQueue, *, epochs: int) -> tuple[float, float, float, str]:
    """(calibration s, estimate s, real s, basis) of a 3-run digits sweep (ε 1 and 4, clip 1, a baseline)."""
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="digits", epochs=epochs), epsilons=(1.0, 4.0),
                            max_grad_norms=(1.0,), seeds=(0,))
    started = time.perf_counter()
    guess = sweeps.estimate(spec, store=queue.store)
    calibration = time.perf_counter() - started
    started = time.perf_counter()
    sweep = sweeps.submit_sweep(queue, spec, name="bench")
    while sweeps.sweep_progress(queue.store, sweep.id).status == "running":
        time.sleep(0.1)
    real = time.perf_counter() - started
    status = sweeps.sweep_progress(queue.store, sweep.id).status
    if status != "done":
        raise RuntimeError(f"sweep ended {status}")
    return calibration, float(guess.seconds or float("nan")), real, guess.basis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-models", type=int, default=16)
    parser.add_argument("--sweep-epochs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        queue = JobQueue(RunStore(root))
        try:
            pool = pool_row(queue, n_models=args.pool_models)
            sweep = sweep_row(queue, epochs=args.sweep_epochs)
        finally:
            queue.shutdown(wait=True, timeout=60)
    print(f"{'job':<44}{'calibration':>12}{'estimate':>14}{'real':>14}{'error':>9}  within ±30 %")
    for label, (calibration, estimate, real, *_) in (
            (f"attack-lab pool, {args.pool_models} models, digits ε = 3", pool),
            (f"sweep, digits, 3 runs x {args.sweep_epochs} epochs", sweep)):
        error = (estimate - real) / real
        print(f"{label:<44}{calibration:>11.2f}s{format_duration(estimate):>14}{format_duration(real):>14}"
              f"{100 * error:>+8.0f}%  {'yes' if abs(error) <= TOLERANCE else 'NO'}")
    print(f"sweep estimate basis: {sweep[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
