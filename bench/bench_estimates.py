"""Estimate vs real wall time of the Attack lab pool and a Tradeoffs sweep (issue 10, part 2). Target: within ±30 %.

Both estimates are the ones the pages show before starting: ``dpcore.jobs.attack.estimate_seconds`` with
``attack_speed`` (this machine's measured speed for the reference models) and ``dpcore.jobs.sweep.estimate``
(calibrated the same way). Each job then runs through ``dpcore.jobs.queue.JobQueue`` and is timed from submit
to its end. The calibration itself (a few steps, once per process) is timed separately and is not part of
either job. While each job runs, the ETA the page shows is sampled and ``elapsed + ETA`` (the predicted
length) is compared with the real length once a quarter and half of the job is done: ``blend`` is the ETA the
pages show (``dpcore.views.progress.corrected_eta``: the estimate blended with the job's own speed), ``measured``
the job's own speed alone (``prior_weight=0``, the ETA before the blend). ``--load N`` (default 2) keeps N busy
processes running throughout, the load the estimates must survive (issue 10: "beside two busy processes").
``--skip-pool`` leaves the attack-lab pool out (the target run is still trained first, so the worker is warm and
the store holds one cold run, as after a first training). The bench process uses one torch thread, as the server
(``app.py``) does. ``--runs`` also prints each training run's measured parts (``runs_table``: what the sweep
estimate's history reads). Run: ``python bench/bench_estimates.py`` (``--pool-models``, ``--skip-pool``,
``--sweep-epochs``, ``--sweep-epsilons``, ``--load``, ``--runs``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore.config import TrainConfig
from dpcore.engine.threads import set_process_threads
from dpcore.jobs import attack as audit
from dpcore.jobs import speed_history
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.queue import JobQueue
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RunStore
from dpcore.views import attack_lab as lab
from dpcore.views import tradeoffs
from dpcore.views.progress import corrected_eta, estimate_progress, format_duration

TOLERANCE = 0.30
POLL_S = 0.25
CHECKPOINTS = (0.25, 0.5)  # shares of the job done at which the running ETA is scored


def _busy() -> None:
    while True:  # one core's worth of load until terminated
        pass


def start_load(n: int) -> list[multiprocessing.Process]:
    """``n`` busy processes (terminate them with ``stop_load``)."""
    workers = [multiprocessing.get_context("spawn").Process(target=_busy, daemon=True) for _ in range(n)]
    for worker in workers:
        worker.start()
    return workers


def stop_load(workers: list[multiprocessing.Process]) -> None:
    for worker in workers:
        worker.terminate()
        worker.join(5)


class EtaTrace:
    """``(seconds since submit, share done, blended ETA, measured-only ETA)`` samples of one running job."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float | None, float | None]] = []

    def add(self, since_submit: float, share: float, blended: float | None, measured: float | None) -> None:
        self.samples.append((since_submit, share, blended, measured))

    def error_at(self, share: float, real: float, *, which: int) -> float | None:
        """Relative error of ``elapsed + ETA`` against ``real`` at the first sample with ``share`` done."""
        for since, done, *etas in self.samples:
            if done >= share and etas[which] is not None:
                return (since + etas[which] - real) / real
        return None


def _wait_trained(queue: JobQueue, run_id: str) -> StoredRun:
    record = queue.wait(run_id, timeout=900)
    while StoredRun.from_record(record).mia_status == "pending":
        time.sleep(0.05)
        record = queue.store.get(run_id)
    if record.status != DONE:
        raise RuntimeError(f"run {run_id} ended {record.status}: {record.error_message}")
    return StoredRun.from_record(record)


def pool_row(queue: JobQueue, *, n_models: int) -> tuple[float, float, float, EtaTrace]:
    """(calibration s, estimate s, real s) of an ``n_models`` attack-lab pool on a digits ε = 3 target."""
    target = _wait_trained(queue, queue.submit(TrainConfig(dataset="digits", target_epsilon=3.0)))
    started = time.perf_counter()
    measured = audit.attack_speed(target.record)
    calibration = time.perf_counter() - started
    speed, config = measured if measured is not None else (None, None)
    estimate = audit.estimate_seconds(target.summary, n_models=n_models, speed=speed, config=config)
    started = time.perf_counter()
    job_id = audit.submit_attack(queue, target.id, n_models=n_models, estimate_s=estimate)
    trace = EtaTrace()
    while (record := queue.store.get(job_id)).active:
        if record.status == "running" and record.total_steps:
            progress = estimate_progress(record)
            measured = corrected_eta(estimate_s=estimate, elapsed_s=progress.elapsed_s, done=progress.steps_done,
                                     total=progress.total_steps, prior_weight=0.0)
            trace.add(time.perf_counter() - started, progress.steps_done / record.total_steps, lab.job_eta(record),
                      measured)
        time.sleep(POLL_S)
    real = time.perf_counter() - started
    if record.status != DONE:
        raise RuntimeError(f"attack job ended {record.status}: {record.error_message}")
    return calibration, float(estimate or float("nan")), real, trace


SweepRow = tuple[float, float, float, EtaTrace, str]


def sweep_row(queue: JobQueue, *, epochs: int, epsilons: tuple[float, ...]) -> SweepRow:
    """(calibration s, estimate s, real s, ETA samples, basis) of a digits sweep over ``epsilons`` (clip 1) and a
    baseline."""
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="digits", epochs=epochs), epsilons=epsilons,
                            max_grad_norms=(1.0,), seeds=(0,))
    started = time.perf_counter()
    guess = sweeps.estimate(spec, store=queue.store)
    calibration = time.perf_counter() - started
    started = time.perf_counter()
    sweep = sweeps.submit_sweep(queue, spec, name="bench", estimate_s=guess.seconds)
    trace = EtaTrace()
    while sweeps.sweep_progress(queue.store, sweep.id).status == "running":
        states = sweeps.member_states(queue.store, sweep)
        share = sum(1.0 if m.state == DONE else float(m.run.progress or 0.0) if m.state == "running" else 0.0
                    for m in states) / len(states)
        trace.add(time.perf_counter() - started, share,
                  tradeoffs.sweep_eta(states, estimate_s=guess.seconds), tradeoffs.sweep_eta(states))
        time.sleep(POLL_S)
    real = time.perf_counter() - started
    status = sweeps.sweep_progress(queue.store, sweep.id).status
    if status != "done":
        raise RuntimeError(f"sweep ended {status}")
    return calibration, float(guess.seconds or float("nan")), real, trace, guess.basis


def runs_table(store: RunStore) -> list[str]:
    """One line per finished training run, oldest first: its worker job number (1: the worker's first, cold), ε,
    whole job (s, ``started`` to ``job_ended``), training (s), ms per step (whole training / steps), ms per step after
    the first (``warm_ms_per_step``) and the job outside training (s, from ``job_began`` in the worker)."""
    lines = [f"{'job':>4}{'ε':>6}{'whole s':>9}{'trained s':>11}{'ms/step':>9}{'warm ms':>9}{'outside s':>11}"]
    for record in sorted(store.records(kind="train", status=DONE), key=lambda r: r.started or ""):
        summary, whole = record.summary, speed_history.job_seconds(record)
        since_began = speed_history.job_seconds(record, since="job_began")
        trained = float(summary.get("seconds") or 0.0)
        outside = "–" if since_began is None else f"{since_began - trained:.3f}"
        lines.append(f"{summary.get('worker_job')!s:>4}{summary.get('target_epsilon')!s:>6}"
                     f"{'–' if whole is None else f'{whole:.3f}':>9}{trained:>11.3f}{summary.get('ms_per_step')!s:>9}"
                     f"{summary.get('warm_ms_per_step')!s:>9}{outside:>11}")
    return lines


def _percent(error: float | None) -> str:
    return "–" if error is None else f"{100 * error:+.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-models", type=int, default=16)
    parser.add_argument("--skip-pool", action="store_true", help="train the target run, but no attack-lab pool")
    parser.add_argument("--sweep-epochs", type=int, default=15, help="epochs per sweep run (default 15, the recipe)")
    parser.add_argument("--sweep-epsilons", default="1,2,4,8", help="target ε values of the sweep (default 1,2,4,8)")
    parser.add_argument("--load", type=int, default=2, help="busy processes kept running meanwhile (default 2)")
    parser.add_argument("--runs", action="store_true", help="also print each training run's measured parts")
    args = parser.parse_args(argv)
    epsilons = tuple(float(value) for value in args.sweep_epsilons.split(","))
    set_process_threads(1)  # as the server does (app.py): its calibrations run beside the workers
    load = start_load(args.load)
    try:
        with tempfile.TemporaryDirectory() as root:
            queue = JobQueue(RunStore(root))
            try:
                if args.skip_pool:
                    _wait_trained(queue, queue.submit(TrainConfig(dataset="digits", target_epsilon=3.0)))
                pool = None if args.skip_pool else pool_row(queue, n_models=args.pool_models)
                sweep = sweep_row(queue, epochs=args.sweep_epochs, epsilons=epsilons)
                table = runs_table(queue.store) if args.runs else []
            finally:
                queue.shutdown(wait=True, timeout=60)
    finally:
        stop_load(load)
    print(f"load: {args.load} busy process(es); running ETA scored as (elapsed + ETA - real) / real")
    print(f"{'job':<44}{'calibration':>12}{'estimate':>10}{'real':>12}{'error':>8}  ±30 %"
          f"{'blend@25%':>11}{'blend@50%':>11}{'measured@25%':>14}{'measured@50%':>14}")
    rows = [] if pool is None else [(f"attack-lab pool, {args.pool_models} models, digits ε = 3", pool)]
    rows.append((f"sweep, digits, {len(epsilons) + 1} runs x {args.sweep_epochs} epochs", sweep))
    for label, (calibration, estimate, real, trace, *_) in rows:
        error = (estimate - real) / real
        running = [_percent(trace.error_at(share, real, which=which)) for which in (0, 1) for share in CHECKPOINTS]
        print(f"{label:<44}{calibration:>11.2f}s{format_duration(estimate):>10}{format_duration(real):>12}"
              f"{100 * error:>+7.0f}%  {'yes' if abs(error) <= TOLERANCE else 'NO ':<5}"
              f"{running[0]:>11}{running[1]:>11}{running[2]:>14}{running[3]:>14}")
    print(f"sweep estimate basis: {sweep[4]}")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
