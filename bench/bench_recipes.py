"""Benchmark: how well the built-in recipes train, and whether they clip inside the healthy band.

Run: ``OMP_NUM_THREADS=1 python bench/bench_recipes.py [--datasets synthetic digits breast-cancer]
[--epsilons 1 3 8] [--seeds 0 1 2] [--set key=value ...]``. Trains every dataset's recipe
(``dpcore.config.RECIPES``) with ``dpcore.train`` at each target ε and seed (secret noise, as a user's run),
and once per seed without DP, then prints one table: dataset, ε, mean test accuracy over the seeds (and
its range), mean no-DP accuracy, the gap, and the median per-step clip fraction (median over every step
of every seed's run; the app calls 50-80 % healthy). ``--set`` overrides a recipe knob for a search,
e.g. ``--set max_grad_norm=0.3 --set lr=0.2``. The OpenML datasets (mnist, fashion-mnist, cifar10,
adult) need a download and are not run by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore import train
from dpcore.config import TrainConfig

HEALTHY_BAND = (0.5, 0.8)


def _value(text: str) -> object:
    """``text`` as an int, a float or the string itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def bench(dataset: str, *, epsilons: list[float], seeds: list[int],
          overrides: dict[str, object]) -> list[dict[str, float | str]]:
    """One row per ε for ``dataset``: accuracies as fractions, clip fraction as a fraction, seconds."""
    baseline = [train(TrainConfig(dataset=dataset, private=False, seed=seed, device="cpu", **overrides)).test_accuracy
                for seed in seeds]
    rows = []
    for epsilon in epsilons:
        accuracies, clips, start = [], [], time.perf_counter()
        for seed in seeds:
            result = train(TrainConfig(dataset=dataset, target_epsilon=epsilon, seed=seed, device="cpu", **overrides))
            accuracies.append(result.test_accuracy)
            clips.extend(result.history["clip_fraction"].dropna().tolist())
        rows.append({"dataset": dataset, "epsilon": epsilon, "accuracy": statistics.mean(accuracies),
                     "min": min(accuracies), "max": max(accuracies), "no_dp": statistics.mean(baseline),
                     "clip": statistics.median(clips) if clips else float("nan"),
                     "seconds": (time.perf_counter() - start) / len(seeds)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "digits", "breast-cancer"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe knob")
    args = parser.parse_args(argv)
    overrides = {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}
    if overrides:
        print(f"overrides: {overrides}")
    print(f"{'dataset':<14} {'ε':>4} {'accuracy':>9} {'(range)':>13} {'no DP':>7} {'gap':>6} {'clipped':>8}  s/run")
    for dataset in args.datasets:
        for row in bench(dataset, epsilons=args.epsilons, seeds=args.seeds, overrides=overrides):
            low, high = HEALTHY_BAND
            flag = "" if low <= row["clip"] <= high else " (outside 50-80 %)"
            print(f"{row['dataset']:<14} {row['epsilon']:>4g} {row['accuracy']:>9.1%} "
                  f"{row['min']:>6.1%}-{row['max']:<6.1%} {row['no_dp']:>7.1%} "
                  f"{row['accuracy'] - row['no_dp']:>+6.1%} {row['clip']:>8.0%}  {row['seconds']:.2f}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
