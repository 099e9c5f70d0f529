"""Benchmark: milliseconds per logical step for non-private, book-keeping, ghost and hooks DP-SGD, and the ratios.

Run: ``python bench/bench_step_time.py [--epochs N] [--repeats N] [--device auto|cpu|cuda] [--modes a,b]
[--cases mlp,cnn]``. Prints one table, measured in one process so the ratios compare like with like (wall clock
and process CPU time, the modes taking turns one short training each, ``repeats`` rounds). "paired x" is the
median over rounds of (this mode's median step / non-private's median step in the same round), with its
quartiles: on a machine shared with other work it moves less than the pooled ratio. The default private mode ("auto")
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


def measure_case(base: TrainConfig, *, epochs: int, repeats: int, device: str,
                 modes: tuple[str, ...] = tuple(name for name, _ in MODES)) -> dict[str, tuple[float, ...]]:
    """{mode: (median wall ms/step, median CPU ms/step, paired ratio, its lower and upper quartile)} for ``modes``.

    The modes take turns, ``repeats`` rounds: a burst of load from other processes hits every mode alike
    instead of one of them. The paired ratio is the median over rounds of this mode's median wall-clock step
    over non-private's in the same round (1.0 for non-private itself).
    """
    configs = {}
    for mode, changes in MODES:
        if mode not in modes:
            continue
        cfg = base.replace(noise_multiplier=1.0, epochs=epochs, device=device, **changes)
        configs[mode] = cfg if cfg.private else cfg.replace(noise_multiplier=None)
    data = load_for_config(base)
    for cfg in configs.values():
        train(cfg.replace(epochs=1), data=data)  # warm-up: first-call allocations and kernel selection
    wall: dict[str, list[float]] = {mode: [] for mode in configs}
    cpu: dict[str, list[float]] = {mode: [] for mode in configs}
    paired: dict[str, list[float]] = {mode: [] for mode in configs}
    for _ in range(repeats):
        round_medians = {}
        for mode, cfg in configs.items():
            wall_gaps, cpu_gaps = step_gaps(cfg, data=data)
            wall[mode] += wall_gaps
            cpu[mode] += cpu_gaps
            round_medians[mode] = statistics.median(wall_gaps)
        for mode, value in round_medians.items():
            paired[mode].append(value / round_medians["non-private"])
    results = {}
    for mode in configs:
        quartiles = statistics.quantiles(paired[mode], n=4) if len(paired[mode]) > 1 else [paired[mode][0]] * 3
        results[mode] = (1000 * statistics.median(wall[mode]), 1000 * statistics.median(cpu[mode]),
                         statistics.median(paired[mode]), quartiles[0], quartiles[2])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training")
    parser.add_argument("--repeats", type=int, default=6, help="rounds in which every mode trains once")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", default=",".join(name for name, _ in MODES),
                        help="comma-separated modes to time (non-private is always included: the ratios need it)")
    parser.add_argument("--cases", default="mlp,cnn", help="comma-separated prefixes of the cases to run")
    args = parser.parse_args()
    modes = ("non-private", *(m for m in args.modes.split(",") if m and m != "non-private"))
    unknown = set(modes) - {name for name, _ in MODES}
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {[name for name, _ in MODES]}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"{os.cpu_count()} cores, load average {load:.1f} at start")
    print(f"{'case':<18}{'mode':<13}{'ms/step':>9}{'x non-private':>15}{'CPU ms/step':>13}{'x non-private':>15}"
          f"{'paired x (quartiles)':>24}")
    for case, base in CASES:
        if not any(case.startswith(prefix) for prefix in args.cases.split(",")):
            continue
        results = measure_case(base, epochs=args.epochs, repeats=args.repeats, device=args.device, modes=modes)
        base_wall, base_cpu = results["non-private"][:2]
        for mode, (wall_ms, cpu_ms, ratio, low, high) in results.items():
            print(f"{case:<18}{mode:<13}{wall_ms:>9.2f}{wall_ms / base_wall:>14.2f}x"
                  f"{cpu_ms:>13.2f}{cpu_ms / base_cpu:>14.2f}x{ratio:>10.2f}x ({low:.2f}-{high:.2f})", flush=True)
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
