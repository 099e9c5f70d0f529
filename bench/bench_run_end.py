"""Benchmark: a run's end with one evaluation pass over members and non-members instead of three (issue 10).

Run: ``OMP_NUM_THREADS=1 python bench/bench_run_end.py [--repeats N]``. For ``synthetic`` and ``digits`` at ε = 3
(their recipes), in ONE process, before and after taking turns:

- the run-end phase of the training job (``run_training`` with a store, as the queue's worker runs it): from
  ``engine.training._finish`` starting to ``run_training`` returning (last epoch row, exact ε, the unwrapped copy,
  ``store.finish``, the loss attack with roc.json, example_outputs.npz). before = ``three_pass_finish``: the
  result without its kept pass (``final_logits=None``), so the attack and the per-example outputs evaluate the
  model again, as the code did before; after = as shipped. Median over the repeats.
- the evaluation work alone (fastest of many): three passes (last row, attack, outputs) against one pass and the
  same three computations from its logits.

``three_pass_runner`` is the queue's ``train_runner`` with the before behaviour, importable by worker processes
(``bench/bench_end_to_end.py --run-end`` submits the seed config with both, taking turns).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore import TrainConfig
from dpcore.attacks import loss_threshold_attack, loss_threshold_attack_on_logits
from dpcore.engine import membership
from dpcore.engine import training as engine
from dpcore.engine.result import RunResult
from dpcore.jobs import group_results
from dpcore.jobs.queue import train_runner
from dpcore.jobs.training import run_training
from dpcore.store.runs import RunStore

CASES = [("synthetic ε = 3", TrainConfig(dataset="synthetic", target_epsilon=3.0, device="cpu")),
         ("digits ε = 3", TrainConfig(dataset="digits", target_epsilon=3.0, device="cpu"))]
SHIPPED_FINISH = engine._finish


def three_pass_finish(plan: Any, progress: Any) -> RunResult:
    """``_finish`` without the kept pass: readers of the result evaluate the model again (the code before)."""
    return dataclasses.replace(SHIPPED_FINISH(plan, progress), final_logits=None)


def three_pass_runner(run_id: str, store: RunStore, should_stop: Callable[[], bool]) -> Any:
    """The queue's ``train_runner`` as it was before: three evaluation passes at the run's end."""
    engine._finish = three_pass_finish
    try:
        return train_runner(run_id, store, should_stop)
    finally:
        engine._finish = SHIPPED_FINISH


def run_end_seconds(store: RunStore, cfg: TrainConfig, *, version: str) -> float:
    """Seconds from ``_finish`` starting to ``run_training`` returning, for one stored training run."""
    stamps: list[float] = []
    finish = three_pass_finish if version == "before" else SHIPPED_FINISH

    def stamped(plan: Any, progress: Any) -> RunResult:
        stamps.append(time.perf_counter())
        return finish(plan, progress)

    engine._finish = stamped
    try:
        run_training(cfg, store=store, run_id=store.create_run(cfg))
    finally:
        engine._finish = SHIPPED_FINISH
    return time.perf_counter() - stamps[0]


def eval_seconds(result: RunResult, *, repeats: int) -> tuple[float, float]:
    """Fastest (three passes, one pass) of the run end's evaluation work on ``result``, in seconds."""
    model, data = result.model, result.data
    before, after = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        membership.model_attack_metrics(model, data)
        loss_threshold_attack(model, data)
        group_results._outputs(model, data, "bench")
        middle = time.perf_counter()
        logits = membership.membership_logits(model, data)
        membership.logits_attack_metrics(logits)
        loss_threshold_attack_on_logits(logits)
        group_results._outputs_of_logits(logits, "bench")
        before.append(middle - start)
        after.append(time.perf_counter() - middle)
    return min(before), min(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per version and case (taking turns)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; before = 3 evaluation passes at the run's end, after = 1; "
          f"run end: median of {args.repeats} runs each; eval: fastest of 50")
    print(f"{'case':<18} {'run end before':>15} {'after':>9} {'saved':>8} {'eval before':>12} {'after':>9} "
          f"{'n examples':>11}")
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(root)
        for name, cfg in CASES:
            run_training(cfg.replace(epochs=1), store=store, run_id=store.create_run(cfg))  # warm-up
            times: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.repeats):
                for version in ("before", "after"):
                    times[version].append(run_end_seconds(store, cfg, version=version))
            before, after = (1000 * statistics.median(times[v]) for v in ("before", "after"))
            result = engine.train(cfg.replace(epochs=1))
            eval_before, eval_after = (1000 * s for s in eval_seconds(result, repeats=50))
            n_examples = len(result.data.x_members) + len(result.data.x_non_members)
            print(f"{name:<18} {before:>13.1f}ms {after:>7.1f}ms {before - after:>6.1f}ms "
                  f"{eval_before:>10.1f}ms {eval_after:>7.1f}ms {n_examples:>11}")
        store.close()


if __name__ == "__main__":
    main()
