"""The seed config (synthetic, epsilon 3, the dataset's recipe) through the job queue and through the CLI,
on a quiet machine and beside two busy processes (``python -c "while True: pass"``), in one run.

Prints for each path the median wall time of ``--repeats`` runs (queue: submit -> run 'done' with its
membership attack stored, the worker process already warm; CLI: the whole ``python -m dpcore train``
command, its ``seconds`` training time beside it) and the busy/idle ratio. Target (issue 10): busy <= 2 x idle.
Run: ``python bench/bench_workers.py``. On a shared machine "idle" means "without our two busy processes".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dpcore.config import TrainConfig  # noqa: E402
from dpcore.jobs import queue as jobs  # noqa: E402

SEED = TrainConfig(dataset="synthetic", target_epsilon=3.0, device="cpu")
CLI = [sys.executable, "-m", "dpcore", "train", "--dataset", "synthetic", "--target-epsilon", "3", "--device", "cpu",
       "--json"]


def through_queue(queue: jobs.JobQueue, repeats: int) -> list[float]:
    """Seconds from submit to a finished run with its MIA, ``repeats`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        record = queue.wait(queue.submit(SEED), timeout=600)
        times.append(time.perf_counter() - start)
        assert record.status == "done" and record.summary.get("mia_auc") is not None, record.error_message
    return times


def through_cli(repeats: int) -> tuple[list[float], list[float]]:
    """(whole-command seconds, training seconds reported by the run), ``repeats`` times."""
    walls, trains = [], []
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DPEXPLORER_THREADS")}
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(CLI, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600)
        walls.append(time.perf_counter() - start)
        trains.append(json.loads(out.stdout)["summary"]["seconds"])
    return walls, trains


def busy_processes(n: int) -> list[subprocess.Popen]:
    """Start ``n`` processes that spin one core each."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(queue: jobs.JobQueue, repeats: int) -> dict[str, float]:
    """Medians of the queue path and the CLI path."""
    queue_s = through_queue(queue, repeats)
    cli_wall, cli_train = through_cli(repeats)
    return {"queue": statistics.median(queue_s), "cli": statistics.median(cli_wall),
            "cli_train": statistics.median(cli_train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DPEXPLORER_RUNS_DIR"] = str(Path(tmp) / "runs")
        queue = jobs.get_queue()
        print(f"cores {os.cpu_count()}, {queue.workers} worker(s) x {queue.threads_per_worker} thread(s); "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        through_queue(queue, 1)  # warm the worker (imports, dataset cache)
        idle = measure(queue, args.repeats)
        spinners = busy_processes(2)
        try:
            time.sleep(1.0)
            busy = measure(queue, args.repeats)
        finally:
            for proc in spinners:
                proc.kill()
                proc.wait()
        jobs.shutdown()
    print(f"load average after {os.getloadavg()[0]:.2f}")
    for key, label in (("queue", "queue: submit -> done with MIA"), ("cli", "CLI: whole command"),
                       ("cli_train", "CLI: training seconds")):
        print(f"{label:<34} idle {idle[key]:6.2f} s   beside 2 busy {busy[key]:6.2f} s   "
              f"ratio {busy[key] / idle[key]:5.2f}")


if __name__ == "__main__":
    main()
