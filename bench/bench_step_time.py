"""Benchmark: milliseconds per logical step for non-private, hooks and ghost DP-SGD, and the ratios.

Run: ``python bench/bench_step_time.py [--steps N] [--device auto|cpu|cuda]``. Prints one table,
measured in one process so the ratios compare like with like. Target: the default
private mode ("auto" = ghost) within 3x of non-private for the MLP on CPU.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore import TrainConfig
from dpcore.engine.data import load_for_config
from dpcore.engine.training import train

CASES = [
    ("mlp / synthetic", TrainConfig(dataset="synthetic", model="mlp", batch_size=64)),
    ("cnn / digits", TrainConfig(dataset="digits", model="cnn", batch_size=256)),
]
MODES = [("non-private", {"private": False}), ("hooks", {"grad_sample_mode": "hooks"}),
         ("ghost", {"grad_sample_mode": "ghost"})]


def ms_per_step(cfg: TrainConfig, *, repeats: int) -> float:
    """Median time between consecutive logical steps, in ms, pooled over ``repeats`` runs.

    Timing the gaps between ``on_step`` callbacks leaves out set-up, calibration
    and the per-epoch evaluation (the median ignores the few gaps that hold one).
    """
    data = load_for_config(cfg)
    train(cfg.replace(epochs=1), data=data)  # warm-up: first-call allocations and kernel selection
    gaps: list[float] = []
    for _ in range(repeats):
        stamps: list[float] = []
        train(cfg, data=data, on_step=lambda _row, stamps=stamps: stamps.append(time.perf_counter()))
        gaps += [later - earlier for earlier, later in itertools.pairwise(stamps)]
    return 1000 * statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print(f"{'case':<18}{'mode':<13}{'ms/step':>9}{'x non-private':>15}")
    for case, base in CASES:
        baseline_ms = None
        for mode, changes in MODES:
            cfg = base.replace(noise_multiplier=1.0, epochs=args.epochs, device=args.device, **changes)
            if not cfg.private:
                cfg = cfg.replace(noise_multiplier=None)
            ms = ms_per_step(cfg, repeats=args.repeats)
            baseline_ms = baseline_ms or ms
            print(f"{case:<18}{mode:<13}{ms:>9.2f}{ms / baseline_ms:>14.2f}x", flush=True)


if __name__ == "__main__":
    main()
