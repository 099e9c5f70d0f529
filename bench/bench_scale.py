"""Wall time of one 8-member sweep with 1 and 2 local worker processes and on a local Ray cluster, in one run.

The sweep is 4 target epsilons x 1 clipping bound x 2 seeds on the synthetic dataset (no baseline), each member
trained and attacked as in the dashboard. Every executor is warmed first (its workers have imported torch and
Opacus and trained once), so the figures compare throughput, not start-up; the Ray cluster is started here with
all of this machine's cores (``--ray-cpus``). Prints each wall time (with the median training time of one member,
as the member measured it) and the speed-up over 1 local worker.
Run: ``python bench/bench_scale.py`` (``pip install -r requirements-ray.txt`` first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dpcore.config import TrainConfig  # noqa: E402
from dpcore.jobs import sweep as sweeps  # noqa: E402
from dpcore.jobs.queue import JobQueue  # noqa: E402
from dpcore.jobs.workers import POOL  # noqa: E402
from dpcore.store.runs import DONE, RunStore  # noqa: E402

BASE = TrainConfig(dataset="synthetic", device="cpu")
SPEC = sweeps.SweepSpec(base=BASE, epsilons=(1.0, 2.0, 4.0, 8.0), max_grad_norms=(1.0,), seeds=(0, 1),
                        include_baseline=False)
WARM = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1, device="cpu")


def sweep_seconds(queue: JobQueue) -> tuple[float, float]:
    """Warm every worker slot with one short run, then (wall time of the 8-member sweep to its last attack, median
    training time of one member as the member measured it), in seconds."""
    warm = [queue.submit(WARM) for _ in range(queue.workers)]
    for run_id in warm:
        assert queue.wait(run_id, timeout=900).status == DONE
    start = time.perf_counter()
    sweep = sweeps.submit_sweep(queue, SPEC, window=None)
    assert queue.join(timeout=1800)
    seconds = time.perf_counter() - start
    states = sweeps.member_states(queue.store, sweep)
    assert len(states) == 8 and all(m.state == DONE for m in states), [m.state for m in states]
    return seconds, statistics.median(float(m.run.summary["seconds"]) for m in states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray cluster")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"sweep: {SPEC.n_runs} members ({SPEC.describe()})", flush=True)
    results: dict[str, float] = {}
    member_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in [("1 local worker", {"workers": 1}), ("2 local workers", {"workers": 2}),
                              (f"local Ray ({args.ray_cpus} CPUs)", {"executor": "ray", "ray_address": "local"})]:
            if options.get("executor") == "ray":
                from dpcore.jobs.ray_executor import connect  # deferred: Ray is optional

                POOL.close()  # local workers would compete with Ray's for the cores
                connect("local", num_cpus=args.ray_cpus)
            queue = JobQueue(RunStore(Path(tmp) / name.split(" (")[0].replace(" ", "-")), max_pending=64, **options)
            try:
                results[name], member_s[name] = sweep_seconds(queue)
            finally:
                queue.shutdown(timeout=120)
            print(f"{name:<24} {results[name]:7.1f} s   (one member trains in {member_s[name]:.2f} s, median; "
                  f"load average {os.getloadavg()[0]:.2f})", flush=True)
    base = results["1 local worker"]
    print("speed-up over 1 local worker: " + ", ".join(f"{name} {base / s:.2f}x" for name, s in results.items()))


if __name__ == "__main__":
    main()
