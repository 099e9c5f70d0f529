"""Benchmark: milliseconds per logical step for non-private, book-keeping, ghost and hooks DP-SGD, and the ratios.

Run: ``python bench/bench_step_time.py [--epochs N] [--repeats N] [--device auto|cpu|cuda]``. Prints one
table, measured in one process so the ratios compare like with like (wall clock and process CPU time,
the modes taking turns). The default private mode ("auto")
is book-keeping clipping (``dpcore.engine.bookkeeping``: one backward) for every registry model; target:
within 1.6x of non-private for the MLP and the CNN on CPU. Ghost clipping (the previous default) and
hooks are Opacus' own modes, measured for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore import TrainConfig
from dpcore.engine.data import SplitData, load_for_config
from dpcore.engine.training import train

CASES = [
    ("mlp / synthetic", TrainConfig(dataset="synthetic", model="mlp", batch_size=64)),
    ("cnn / digits", TrainConfig(dataset="digits", model="cnn", batch_size=256)),
]
MODES = [("non-private", {"private": False}), ("bookkeeping", {"grad_sample_mode": "bookkeeping"}),
         ("ghost", {"grad_sample_mode": "ghost"}), ("hooks", {"grad_sample_mode": "hooks"})]


def step_gaps(cfg: TrainConfig, *, data: SplitData) -> tuple[list[float], list[float]]:
    """(wall-clock, process-CPU) seconds between consecutive logical steps of one run of ``cfg``.

    Timing the gaps between ``on_step`` callbacks leaves out set-up, calibration and the per-epoch
    evaluation (the medians ignore the few gaps that hold one). CPU time counts only this process's
    work, so on a machine loaded by others it moves much less than the wall clock.
    """
    stamps: list[tuple[float, float]] = []
    train(cfg, data=data, on_step=lambda _row: stamps.append((time.perf_counter(), time.process_time())))
    pairs = list(itertools.pairwise(stamps))
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]


def measure_case(base: TrainConfig, *, epochs: int, repeats: int, device: str) -> dict[str, tuple[float, float]]:
    """{mode: (median wall ms/step, median CPU ms/step)}; the modes take turns, ``repeats`` rounds.

    Interleaving the modes round by round means a burst of load from other processes hits every
    mode alike instead of one of them.
    """
    configs = {}
    for mode, changes in MODES:
        cfg = base.replace(noise_multiplier=1.0, epochs=epochs, device=device, **changes)
        configs[mode] = cfg if cfg.private else cfg.replace(noise_multiplier=None)
    data = load_for_config(base)
    for cfg in configs.values():
        train(cfg.replace(epochs=1), data=data)  # warm-up: first-call allocations and kernel selection
    wall: dict[str, list[float]] = {mode: [] for mode in configs}
    cpu: dict[str, list[float]] = {mode: [] for mode in configs}
    for _ in range(repeats):
        for mode, cfg in configs.items():
            wall_gaps, cpu_gaps = step_gaps(cfg, data=data)
            wall[mode] += wall_gaps
            cpu[mode] += cpu_gaps
    return {mode: (1000 * statistics.median(wall[mode]), 1000 * statistics.median(cpu[mode])) for mode in configs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"{os.cpu_count()} cores, load average {load:.1f} at start")
    print(f"{'case':<18}{'mode':<13}{'ms/step':>9}{'x non-private':>15}{'CPU ms/step':>13}{'x non-private':>15}")
    for case, base in CASES:
        results = measure_case(base, epochs=args.epochs, repeats=args.repeats, device=args.device)
        base_wall, base_cpu = results["non-private"]
        for mode, (wall_ms, cpu_ms) in results.items():
            print(f"{case:<18}{mode:<13}{wall_ms:>9.2f}{wall_ms / base_wall:>14.2f}x"
                  f"{cpu_ms:>13.2f}{cpu_ms / base_cpu:>14.2f}x", flush=True)
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
