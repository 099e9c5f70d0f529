"""End-to-end time of what users run (issue 10, part 3), all in ONE process.

1. The seed's own plain Opacus script (written out below): synthetic 800 members / 200 non-members (the
   very tensors dpcore's synthetic loader gives), MLP Linear-GroupNorm-ReLU-Linear (128 hidden), Adam 1e-3,
   batch 64, 10 epochs, epsilon = 3 via ``PrivacyEngine().make_private_with_epsilon`` (default PRV
   accountant, ``get_epsilon`` after every epoch as the seed did), a loss-threshold MIA at the end
   (``sklearn.metrics.roc_auc_score``).
2. dpcore doing the same work through the job queue: ``JobQueue.submit`` -> ``wait`` -> its MIA recorded.
3. digits at epsilon = 3 through the queue (with its MIA).
4. A 16-model attack-lab pool on digits through the queue (``dpcore.jobs.attack.submit_attack``, default
   attacks), timed from submit to the finished job.

Prints a table of wall times and the ratio of (2) to (1). Targets: (2) <= 1.0 s and <= 0.25 x (1);
(4) <= 30 s. Run: ``python bench/bench_end_to_end.py`` (``--repeat N`` takes the median of N).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from opacus import PrivacyEngine  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from dpcore.config import TrainConfig  # noqa: E402
from dpcore.engine.data import load_dataset  # noqa: E402
from dpcore.jobs import attack as audit  # noqa: E402
from dpcore.jobs.queue import JobQueue  # noqa: E402
from dpcore.store.records import StoredRun  # noqa: E402
from dpcore.store.runs import DONE, RunStore  # noqa: E402

SEED_TARGET_S = 1.0
SEED_TARGET_RATIO = 0.25
POOL_TARGET_S = 30.0


# ---------------------------------------------------------------------- 1. the seed's plain script
def plain_opacus_script(*, epochs: int = 10) -> dict[str, float]:
    """The seed's script, as a user would write it with Opacus alone. Returns its epsilon and MIA AUC."""
    data = load_dataset("synthetic")  # identical tensors to dpcore's runs: 800 members, 200 non-members
    x_in, y_in, x_out, y_out = data.x_members, data.y_members, data.x_non_members, data.y_non_members
    torch.manual_seed(42)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x_in.shape[1], 128), nn.GroupNorm(8, 128), nn.ReLU(),
                          nn.Linear(128, int(y_in.max()) + 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_in, y_in), batch_size=64, shuffle=True)
    engine = PrivacyEngine()  # default accountant: PRV
    model, optimizer, loader = engine.make_private_with_epsilon(
        module=model, optimizer=optimizer, data_loader=loader, target_epsilon=3.0, target_delta=1e-5,
        epochs=epochs, max_grad_norm=1.0)
    criterion = nn.CrossEntropyLoss()
    epsilon = float("nan")
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            optimizer.zero_grad()
            criterion(model(xb), yb).backward()
            optimizer.step()
        epsilon = engine.get_epsilon(1e-5)  # per epoch, as the seed printed it
    model.eval()
    with torch.no_grad():
        loss_in = nn.functional.cross_entropy(model(x_in), y_in, reduction="none").numpy()
        loss_out = nn.functional.cross_entropy(model(x_out), y_out, reduction="none").numpy()
    labels = np.r_[np.ones(len(loss_in)), np.zeros(len(loss_out))]
    auc = roc_auc_score(labels, -np.r_[loss_in, loss_out])  # lower loss -> member
    return {"epsilon": epsilon, "mia_auc": float(auc)}


# ---------------------------------------------------------------------- 2-4. through the queue
def wait_with_mia(queue: JobQueue, run_id: str, *, timeout: float = 600.0) -> StoredRun:
    """Wait for a training job and then for its membership attack to be recorded; the stored run."""
    deadline = time.monotonic() + timeout
    record = queue.wait(run_id, timeout=timeout)
    while StoredRun.from_record(record).mia_status == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
        record = queue.store.get(run_id)
    if record.status != DONE:
        raise RuntimeError(f"run {run_id} ended {record.status}: {record.error_message}")
    return StoredRun.from_record(record)


def queued_training(queue: JobQueue, cfg: TrainConfig, *, runner: Any = None) -> tuple[float, StoredRun]:
    """Seconds from submit to the finished run with its MIA, and the run (``runner``: the queue's default)."""
    started = time.perf_counter()
    run_id = queue.submit(cfg, runner=runner)
    run = wait_with_mia(queue, run_id)
    return time.perf_counter() - started, run


def queued_pool(queue: JobQueue, target_id: str, *, n_models: int = 16) -> float:
    """Seconds from submitting a ``n_models`` attack-lab job on ``target_id`` to its end (DONE required)."""
    started = time.perf_counter()
    job_id = audit.submit_attack(queue, target_id, n_models=n_models)
    record = queue.wait(job_id, timeout=900)
    if record.status != DONE:
        raise RuntimeError(f"attack job {job_id} ended {record.status}: {record.error_message}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each row; the median is printed")
    parser.add_argument("--skip-pool", action="store_true", help="leave out the 16-model pool row")
    parser.add_argument("--run-end", action="store_true", help="also the seed config with the run end's three "
                        "evaluation passes of before (bench_run_end.three_pass_runner), taking turns")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads in this process")
    plain_opacus_script(epochs=1)  # warm-up: first-call costs (Opacus, PRV tables) are not the script's
    rows: dict[str, list[float]] = {"plain": [], "seed": [], "digits": [], "pool": [], "seed3": []}
    with tempfile.TemporaryDirectory() as root:
        queue = JobQueue(RunStore(root))
        try:
            queued_training(queue, TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1))  # warm-up
            digits_id = None
            for _ in range(args.repeat):
                started = time.perf_counter()
                plain = plain_opacus_script()
                rows["plain"].append(time.perf_counter() - started)
                seconds, seed_run = queued_training(queue, TrainConfig(dataset="synthetic", target_epsilon=3.0))
                rows["seed"].append(seconds)
                if args.run_end:
                    from bench_run_end import three_pass_runner  # deferred: only with --run-end (bench/ on path)

                    rows["seed3"].append(queued_training(queue, TrainConfig(dataset="synthetic", target_epsilon=3.0),
                                                         runner=three_pass_runner)[0])
                seconds, digits_run = queued_training(queue, TrainConfig(dataset="digits", target_epsilon=3.0))
                rows["digits"].append(seconds)
                digits_id = digits_run.id
                if not args.skip_pool:
                    rows["pool"].append(queued_pool(queue, digits_id))
        finally:
            queue.shutdown(wait=True, timeout=60)
    med = {key: statistics.median(values) if values else float("nan") for key, values in rows.items()}
    ratio = med["seed"] / med["plain"]
    print(f"plain script: ε = {plain['epsilon']:.2f}, MIA AUC {plain['mia_auc']:.3f}; dpcore: ε = "
          f"{seed_run.final_epsilon:.2f}, MIA AUC {seed_run.summary.get('mia_auc', float('nan')):.3f}")
    print()
    print(f"{'what (one process, median of ' + str(args.repeat) + ')':<58}{'wall s':>9}  target")
    print(f"{'seed config, plain Opacus script (PRV, per-epoch ε, MIA)':<58}{med['plain']:>9.2f}")
    seed_ok = med["seed"] <= SEED_TARGET_S and ratio <= SEED_TARGET_RATIO
    print(f"{'seed config, dpcore via JobQueue submit -> done + MIA':<58}{med['seed']:>9.2f}  "
          f"<= {SEED_TARGET_S} s and <= {SEED_TARGET_RATIO} x plain: {'met' if seed_ok else 'NOT met'}")
    print(f"{'  ratio dpcore / plain':<58}{ratio:>9.3f}")
    if rows["seed3"]:
        print(f"{'seed config via JobQueue, run end with 3 passes (before)':<58}{med['seed3']:>9.2f}")
    print(f"{'digits ε = 3, dpcore via JobQueue (+ MIA)':<58}{med['digits']:>9.2f}")
    if rows["pool"]:
        pool_ok = med["pool"] <= POOL_TARGET_S
        print(f"{'16-model attack-lab pool on digits via JobQueue':<58}{med['pool']:>9.2f}  "
              f"<= {POOL_TARGET_S} s: {'met' if pool_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
