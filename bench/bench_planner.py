"""Benchmark: seconds per budget-planner computation for typical inputs, cold (no cached values).

Run: ``python bench/bench_planner.py [--repeats N]``. Prints one row per (case, computation),
the median over ``repeats`` cold runs. These are the calls the Budget planner page makes on a
rerun whose inputs it has not seen (pages/planner.py caches answers per input, so a repeat
costs nothing). Target: every computation but PRV well under a second; PRV is drawn last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore.privacy import accounting

#: (label, N, batch size, epochs, sigma): the recipes' datasets at their default batch sizes.
CASES = [
    ("synthetic N=800 B=64 E=10", 800, 64, 10, 1.0),
    ("digits N=1437 B=256 E=40", 1437, 256, 40, 1.0),
    ("mnist N=60000 B=512 E=5", 60000, 512, 5, 1.0),
    ("adult N=39073 B=256 E=10", 39073, 256, 10, 1.0),
    ("mnist N=60000 B=64 E=100 (long run)", 60000, 64, 100, 0.8),
]
DELTA = 1e-5
CURVE_SIGMAS = (0.5, 0.8, 1.0, 1.5, 2.0, 4.0)
TARGET_EPSILON = 3.0


def clear_caches() -> None:
    """Forget every cached accountant value, so each timing is a first visit."""
    accounting._rdp_at.cache_clear()
    accounting._noise_for_epsilon.cache_clear()


def computations(n: int, batch: int, epochs: int, sigma: float) -> list[tuple[str, Callable[[], object]]]:
    sampling = accounting.sampling_for(n=n, batch_size=batch)
    q, steps = sampling.sample_rate, sampling.steps(epochs)

    def headline(name: str) -> Callable[[], object]:
        return lambda: accounting.epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA,
                                              accountant=name)

    return [
        ("epsilon RDP (headline, rdp_epsilon)", lambda: accounting.rdp_epsilon(
            noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)),
        ("  same by epsilon_for (Opacus, all orders)", headline("rdp")),
        ("epsilon GDP (headline)", headline("gdp")),
        ("epsilon PRV (headline)", headline("prv")),
        ("epsilon vs epochs, 7 sigmas (RDP)", lambda: accounting.rdp_epsilon_by_epoch(
            noise_multipliers=(*CURVE_SIGMAS, sigma + 0.1), sampling=sampling, epochs=epochs, delta=DELTA)),
        (f"sigma for eps {TARGET_EPSILON:g} (RDP, headline)", lambda: accounting.rdp_noise_for_epsilon(
            target_epsilon=TARGET_EPSILON, delta=DELTA, sample_rate=q, steps=steps)),
        ("sigma for eps 0.5..16 chart (RDP)", lambda: accounting.sigma_curve(
            sample_rate=q, steps=steps, delta=DELTA)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold runs per computation (median reported)")
    args = parser.parse_args()
    print(f"{'case':38s} {'computation':44s} {'seconds':>8s}")
    for label, n, batch, epochs, sigma in CASES:
        totals = 0.0
        for name, compute in computations(n, batch, epochs, sigma):
            times = []
            for _ in range(args.repeats):
                clear_caches()
                started = time.perf_counter()
                compute()
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            totals += 0.0 if "PRV" in name or name.startswith(" ") else seconds
            print(f"{label:38s} {name:44s} {seconds:8.3f}")
        print(f"{label:38s} {'all but PRV, cold':44s} {totals:8.3f}")


if __name__ == "__main__":
    main()
