"""How fast this machine trains a config: a small calibration (a few real steps), cached per process.

``measure_speed(cfg)`` builds the run exactly as ``train`` would (``plan_training``: data, model, noise
calibration, Opacus wrapping), times a few optimizer steps and one evaluation pass, and returns a
``Speed``. ``machine_speed(cfg)`` caches that per dataset, model, batch size, privacy, device and torch
thread count, so a page estimates from it without training again. ``run_seconds`` (pure) turns a
``Speed`` into the wall time of a whole run: set-up + steps x step time + one evaluation per epoch + the
final evaluation and membership attack. The estimates of the Tradeoffs sweeps and the Attack lab pools
(``dpcore.jobs.sweep.estimate``, ``dpcore.jobs.attack.estimate_seconds``) are built on it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from dpcore.config import TrainConfig
from dpcore.engine import membership
from dpcore.engine.data import SplitData, dataset_status, load_for_config
from dpcore.engine.threads import training_threads
from dpcore.engine.training import plan_training

#: Steps timed by a calibration (after one warm-up step); fewer when they take longer than CALIBRATION_BUDGET_S.
CALIBRATION_STEPS = 8
CALIBRATION_BUDGET_S = 2.0
#: Per run, outside training: the job's bookkeeping (store writes, result files). Measured through the queue.
JOB_OVERHEAD_S = 0.15

_cache: dict[tuple[Any, ...], Speed] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Speed:
    """Measured cost of one run's parts on this machine, in seconds (``ms_per_step`` in milliseconds).

    ``setup_s``: data, model and noise calibration before the first step; ``ms_per_step``: one logical
    optimizer step; ``eval_s``: one evaluation pass over members and non-members (done at every epoch end,
    and once more for the membership attack); ``basis``: where the numbers come from, for the page.
    """

    ms_per_step: float
    setup_s: float = 0.0
    eval_s: float = 0.0
    basis: str = "given"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


def run_seconds(speed: Speed, *, steps: int, epochs: int, attack: bool = True,
                overhead_s: float = JOB_OVERHEAD_S) -> float:
    """Wall time (s) of one run of ``steps`` optimizer steps over ``epochs`` epochs at ``speed``.

    set-up + steps x ms_per_step / 1000 + epochs x eval_s + (eval_s for the membership attack when
    ``attack``) + ``overhead_s``.

    >>> run_seconds(Speed(ms_per_step=10.0, setup_s=0.5, eval_s=0.1), steps=100, epochs=2, overhead_s=0.0)
    1.8
    """
    evals = max(0, int(epochs)) + (1 if attack else 0)
    total = speed.setup_s + max(0, int(steps)) * speed.ms_per_step / 1000.0 + evals * speed.eval_s + overhead_s
    return round(total, 6)


def expected_steps(*, n_examples: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a run: epochs x batches per epoch (ceil(n / batch size), as ``train`` plans them)."""
    n = max(1, int(n_examples))
    return int(epochs) * max(1, math.ceil(n / min(int(batch_size), n)))


def _key(cfg: TrainConfig, n_members: int | None) -> tuple[Any, ...]:
    return (cfg.dataset, cfg.data_path, cfg.model, int(cfg.batch_size), bool(cfg.private), cfg.physical_batch_size,
            getattr(cfg, "grad_sample_mode", None), cfg.device, n_members, torch.get_num_threads())


def measure_speed(cfg: TrainConfig, *, data: SplitData | None = None, steps: int = CALIBRATION_STEPS) -> Speed:
    """Calibrate ``cfg`` on this machine now: build it as ``train`` does, time ``steps`` steps (their median) and
    one evaluation.

    ``data`` (optional) is used as given, as ``train(data=...)`` would. The run is short (one warm-up
    step, then at most ``steps`` steps or CALIBRATION_BUDGET_S) and nothing is stored. Raises what
    ``plan_training`` raises for a bad config or a dataset that cannot be loaded.
    """
    started = time.perf_counter()
    cfg = dataclasses.replace(cfg, epochs=1, epsilon_limit=None)
    plan = plan_training(cfg, data=data, started=started)
    setup_s = time.perf_counter() - started
    if setup_s > 0.3:  # the process's first plan pays one-off costs (imports, caches): time a second one
        again = time.perf_counter()
        plan = plan_training(cfg, data=plan.data, started=again)
        setup_s = time.perf_counter() - again
    n_params = sum(p.numel() for p in plan.model.parameters())
    # the threads ``train`` would use (1 for a small model): a process with more (the CLI, a script) measured a
    # digits step at 69-385 ms beside two busy processes, where the worker trained one in about 6 ms
    with training_threads(model_params=n_params):
        ms, timed, eval_s = _time_steps(plan, steps=steps)
    return Speed(ms_per_step=round(ms, 4), setup_s=round(setup_s, 4), eval_s=round(eval_s, 4),
                 basis=f"measured on this machine ({ms:.1f} ms per step, {timed} steps timed)")


def _time_steps(plan: Any, *, steps: int) -> tuple[float, int, float]:
    """``(median ms per step, steps timed, s of one evaluation pass)`` of a planned run (``measure_speed``)."""
    model, optimizer, criterion = plan.model, plan.optimizer, plan.criterion
    model.train()
    gaps: list[float] = []  # seconds of each timed step; their median resists a spike of load
    began = last = time.perf_counter()
    first = True
    while len(gaps) < steps and time.perf_counter() - began <= CALIBRATION_BUDGET_S:
        for xb, yb in plan.loader:
            xb, yb = xb.to(plan.device), yb.to(plan.device)
            if len(xb):
                criterion(model(xb), yb).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            now = time.perf_counter()
            if not first:  # the first step pays one-off costs (hooks, allocations): not timed
                gaps.append(now - last)
            first, last = False, now
            if len(gaps) >= steps or now - began > CALIBRATION_BUDGET_S:
                break
    timed = len(gaps)
    ms = 1000.0 * statistics.median(gaps) if gaps else 1000.0 * (last - began)
    eval_start = time.perf_counter()
    d = plan.data
    with torch.no_grad():  # what every epoch end does: both passes and the loss attack's numbers (engine.membership)
        members = membership.example_losses(model, d.x_members, d.y_members, device=plan.device)
        non_members = membership.example_losses(model, d.x_non_members, d.y_non_members, device=plan.device)
        membership.loss_attack_metrics(members.losses, non_members.losses)
    return ms, timed, time.perf_counter() - eval_start


def machine_speed(cfg: TrainConfig, *, data: SplitData | None = None, refresh: bool = False) -> Speed:
    """``measure_speed(cfg)`` once per process for its dataset, model, batch size, privacy, device and thread count.

    ``data``: see ``measure_speed`` (its size is part of the cache key). ``refresh`` measures again.
    """
    key = _key(cfg, None if data is None else len(data.x_members))
    with _cache_lock:
        if not refresh and key in _cache:
            return _cache[key]
    if data is None:
        data = load_for_config(cfg)
    speed = measure_speed(cfg, data=data)
    with _cache_lock:
        _cache[key] = speed
    return speed


def calibrate(cfg: TrainConfig) -> tuple[Speed, int] | None:
    """``(machine_speed(cfg), members it trains on)`` for a config whose data is on this machine; None when the
    dataset would need a download or cannot be loaded or built (the caller falls back to a rougher guess)."""
    try:
        if cfg.dataset != "csv" and dataset_status(cfg.dataset) == "download":
            return None
        data = load_for_config(cfg)
        return machine_speed(cfg, data=data), len(data.x_members)
    except Exception:  # an estimate must never break the page; the caller says it is a guess
        return None


def clear_speed_cache() -> None:
    """Forget every calibration of this process (tests; after the machine's load changed)."""
    with _cache_lock:
        _cache.clear()


__all__ = ["CALIBRATION_STEPS", "JOB_OVERHEAD_S", "Speed", "calibrate", "clear_speed_cache", "expected_steps",
           "machine_speed", "measure_speed", "run_seconds"]
