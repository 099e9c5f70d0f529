"""Where a second torch thread starts to help: wall time of the same work with 1 and 2 threads, one process.

Prints, for the registry's small models (seed config: synthetic MLP, DP, epsilon 3; digits CNN, DP,
epsilon 3) and for plain MLPs of growing size (forward + backward, batch 256), the seconds with 1 and 2
torch threads and their ratio. The line it finds is ``dpcore.engine.threads.SMALL_MODEL_PARAMS``.
Run on a quiet machine: ``python bench/bench_threads.py``; the load average is printed with the figures.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from dpcore.config import TrainConfig
from dpcore.engine.training import train


def _train_seconds(cfg: TrainConfig, threads: int) -> tuple[float, int]:
    train(cfg.replace(epochs=1), threads=threads)  # warm-up (data cache, Opacus)
    start = time.perf_counter()
    result = train(cfg, threads=threads)
    return time.perf_counter() - start, result.steps


def _mlp_seconds(hidden: int, threads: int, *, steps: int = 40, batch: int = 256) -> tuple[float, int]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    params = sum(p.numel() for p in model.parameters())
    x, y = torch.randn(batch, 64), torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return time.perf_counter() - start, params
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (1 min)")
    configs = {
        "synthetic MLP, DP eps 3 (seed config)": TrainConfig(dataset="synthetic", target_epsilon=3.0, device="cpu"),
        "digits CNN, DP eps 3": TrainConfig(dataset="digits", model="cnn", target_epsilon=3.0, device="cpu"),
    }
    for label, cfg in configs.items():
        one, steps = _train_seconds(cfg, 1)
        two, _ = _train_seconds(cfg, 2)
        print(f"{label:<40} {steps:>5} steps  1 thread {one:6.2f} s  2 threads {two:6.2f} s  2/1 {two / one:5.2f}")
    for hidden in (32, 128, 256, 512, 1024):
        one, params = _mlp_seconds(hidden, 1)
        two, _ = _mlp_seconds(hidden, 2)
        print(f"plain MLP {params:>9,} params, 40 steps      1 thread {one:6.2f} s  2 threads {two:6.2f} s  "
              f"2/1 {two / one:5.2f}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
