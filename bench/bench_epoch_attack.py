"""Benchmark: what the loss attack after every epoch (vulnerability over training) costs per epoch.

Run: ``OMP_NUM_THREADS=1 python bench/bench_epoch_attack.py [--repeats N]``. Measures in one process, before and
after taking turns, on ``synthetic`` and ``digits`` (their recipes, without DP and at ε = 3):

- the epoch-end evaluation alone: before = two ``evaluate`` passes (members, non-members: loss and accuracy),
  after = two ``membership.example_losses`` passes plus ``loss_attack_metrics`` (accuracy, AUC, TPR at 1 % FPR);
- whole runs: the median time between consecutive epoch ends (training plus evaluation) with the previous
  ``_epoch_row`` (no attack numbers) patched back in, against the current one.

Prints milliseconds and the difference per epoch.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore import TrainConfig
from dpcore.engine import membership
from dpcore.engine import training as engine

CASES = [("synthetic", TrainConfig(dataset="synthetic", device="cpu")),
         ("digits", TrainConfig(dataset="digits", device="cpu"))]
MODES = [("no DP", {"private": False}), ("ε = 3", {"target_epsilon": 3.0})]
NEW_EPOCH_ROW = engine._epoch_row
NEW_FINAL_PASS = membership.membership_logits  # _finish's one pass of the returned model (None: no pass)


def old_epoch_row(plan: Any, progress: Any, epoch: int) -> dict[str, Any]:
    """``_epoch_row`` as it was before the attack columns: two ``evaluate`` passes, no attack numbers."""
    data, model, device = plan.data, plan.model, plan.device
    losses = [row["loss"] for row in progress.step_rows if row["epoch"] == epoch and not math.isnan(row["loss"])]
    train_loss, train_accuracy = engine.evaluate(model, data.x_members, data.y_members, device=device)
    _, test_accuracy = engine.evaluate(model, data.x_non_members, data.y_non_members, device=device)
    validation_accuracy = (engine.evaluate(model, data.x_validation, data.y_validation, device=device)[1]
                           if data.n_validation else math.nan)
    return {"epoch": epoch, "epsilon": float(plan.epsilon_at[progress.step]),
            "train_loss": float(np.mean(losses)) if losses else train_loss,
            "train_accuracy": train_accuracy, "test_accuracy": test_accuracy,
            "validation_accuracy": validation_accuracy}


def use(version: str) -> None:
    """Install the 'before' or 'after' epoch row (and the final row's attack on the returned model)."""
    engine._epoch_row = NEW_EPOCH_ROW if version == "after" else old_epoch_row
    membership.membership_logits = NEW_FINAL_PASS if version == "after" else (lambda model, data: None)


def eval_times(result: Any, repeats: int) -> tuple[float, float]:
    """Fastest ms of the epoch-end evaluation of members and non-members, (before, after), taking turns: the
    least disturbed by other processes on a shared machine."""
    model, data, device = result.model, result.data, torch.device("cpu")
    before, after = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.evaluate(model, data.x_members, data.y_members, device=device)
        engine.evaluate(model, data.x_non_members, data.y_non_members, device=device)
        middle = time.perf_counter()
        members = membership.example_losses(model, data.x_members, data.y_members, device=device)
        non_members = membership.example_losses(model, data.x_non_members, data.y_non_members, device=device)
        membership.loss_attack_metrics(members.losses, non_members.losses)
        end = time.perf_counter()
        before.append(middle - start)
        after.append(end - middle)
    return 1000 * min(before), 1000 * min(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="whole runs per version and case (alternating)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; before = no attack numbers, after = AUC and TPR per epoch; "
          "eval: fastest of 300, epoch: median time between epoch ends")
    print(f"{'case':<22} {'eval before':>12} {'eval after':>11} {'Δ eval':>8} {'epoch before':>13} "
          f"{'epoch after':>12} {'Δ epoch':>8} {'Δ %':>6}")
    for name, base in CASES:
        for mode, knobs in MODES:
            cfg = base.replace(**knobs)
            gaps: dict[str, list[float]] = {"before": [], "after": []}
            result = None
            for _ in range(args.repeats):
                for version in ("before", "after"):
                    use(version)
                    stamps: list[float] = []
                    result = engine.train(cfg, on_epoch=lambda row, stamps=stamps: stamps.append(time.perf_counter()))
                    gaps[version].extend(b - a for a, b in itertools.pairwise(stamps))
            use("after")
            eval_before, eval_after = eval_times(result, repeats=300)
            epoch_before, epoch_after = (1000 * statistics.median(gaps[v]) for v in ("before", "after"))
            print(f"{name + ' ' + mode:<22} {eval_before:>10.2f}ms {eval_after:>9.2f}ms "
                  f"{eval_after - eval_before:>+6.2f}ms "
                  f"{epoch_before:>11.1f}ms {epoch_after:>10.1f}ms {epoch_after - epoch_before:>+6.1f}ms "
                  f"{100 * (epoch_after - epoch_before) / epoch_before:>+5.1f}%")


if __name__ == "__main__":
    main()
