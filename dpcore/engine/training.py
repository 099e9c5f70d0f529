"""The DP-SGD trainer: one function, ``train(cfg)``, for private runs and their non-private baseline.

It builds data, model and optimizer from a ``TrainConfig``; for private runs it
calibrates (or takes) the noise multiplier, wraps everything with Opacus'
``PrivacyEngine``, and records per logical step the epsilon spent, the fraction
of per-sample gradients clipped and the loss. It stops cleanly on cancel, on a
diverging loss, or before a step would take epsilon past ``epsilon_limit``.

``train`` is three steps: ``plan_training`` (validation, device, model, optimizer,
random streams, sigma, Opacus wrapping, the epsilon-at-step curve and the hard stop),
``_run_epochs`` (the loop; ``_train_batch`` is one physical batch) and ``_finish``
(final epsilon, an unwrapped model, the ``RunResult`` of ``engine.result``). Checkpoints
are in ``engine.checkpoint``, the clipping-bound probe in ``engine.probe``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import secrets
import threading
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from opacus import PrivacyEngine
from opacus.optimizers.optimizer_fast_gradient_clipping import DPOptimizerFastGradientClipping
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch import nn
from torch.utils.data import DataLoader

from dpcore.config import TrainConfig
from dpcore.engine import ddp, membership
from dpcore.engine.bookkeeping import bookkeeping_supported, count_above, use_bookkeeping
from dpcore.engine.checkpoint import ResumeState, write_checkpoint
from dpcore.engine.data import SplitData, load_for_config
from dpcore.engine.models import build_model, make_private_compatible
from dpcore.engine.result import EPOCH_COLUMNS, HISTORY_COLUMNS, RunResult
from dpcore.engine.threads import training_threads
from dpcore.errors import ConfigError
from dpcore.privacy import accounting

StepCallback = Callable[[dict[str, Any]], None]
STOP_REASONS = {
    "finished": "Trained for all {epochs} epoch(s).",
    "epsilon_limit": "Stopped after step {steps}: the next step would have spent more than the "
                     "epsilon limit of {limit:g}.",
    "cancelled": "Cancelled by the user after {steps} steps.",
    "diverged": "The loss became NaN or infinite at step {steps}: training diverged. Lower the "
                "learning rate or the noise, or raise max_grad_norm.",
}
EVAL_BATCH = 2048

# Opacus warns on every run that secure_mode is off (torchcsprng is not installable here;
# the UI says so) and PyTorch about full backward hooks on inputs that need no gradient
# (harmless for per-sample gradients). Module-level filters: jobs run in threads.
warnings.filterwarnings("ignore", message="Secure RNG turned off")
warnings.filterwarnings("ignore", message="Full backward hook is firing")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``: 'auto' picks CUDA, then MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use device 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was requested but Apple MPS is not available; use device 'auto' or 'cpu'")
    return torch.device(name)


def describe_device(device: torch.device, *, threads: bool = True) -> str:
    """Human description, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'.

    ``threads=False`` leaves out this process's torch threads (the server's are not the workers').
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu" and threads:
        count = torch.get_num_threads()
        return f"cpu ({count} thread{'s' if count != 1 else ''})"
    return str(device)


# ---------------------------------------------------------------------- helpers
@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of ``model`` on (x, y), in eval mode, batched."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), EVAL_BATCH):
        xb = x[start:start + EVAL_BATCH].to(device)
        yb = y[start:start + EVAL_BATCH].to(device)
        logits = model(xb)
        total_loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    model.train(was_training)
    n = max(len(x), 1)
    return total_loss / n, correct / n


def _choose_grad_sample_mode(requested: str, model: nn.Module) -> str:
    """'auto' means book-keeping clipping (one backward, ``engine.bookkeeping``) when every trainable layer is
    one it knows, else Opacus' ghost clipping (flat clipping) unless parameters are shared, which ghost rejects."""
    if requested == "bookkeeping" and not bookkeeping_supported(model):
        raise ConfigError("grad_sample_mode 'bookkeeping' supports Linear, Conv2d, GroupNorm and LayerNorm layers "
                          "only; use 'auto' to fall back to Opacus for this model")
    if requested != "auto":
        return requested
    if bookkeeping_supported(model):
        return "bookkeeping"
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                return "hooks"
            seen.add(id(param))
    return "ghost"


def hooks_sample_norms(params: list[nn.Parameter]) -> torch.Tensor | None:
    """Per-sample gradient norms from Opacus' ``grad_sample`` (hooks/functorch mode), before clipping."""
    samples = [p.grad_sample for p in params if getattr(p, "grad_sample", None) is not None]
    if not samples:
        return None
    batch = samples[0].shape[0]
    per_param = torch.stack([gs.reshape(batch, -1).norm(2, dim=1) for gs in samples])
    return per_param.norm(2, dim=0)


def _accumulate_by_clone(self: Any) -> None:
    """``DPOptimizerFastGradientClipping.accumulate`` with ``clone`` where Opacus 1.6 uses ``copy.deepcopy``.

    Same tensors, same values; deepcopy's Python-level bookkeeping cost ~0.15 ms of a ~2.3 ms
    MLP step on CPU (bench/bench_step_time.py). Installed on the optimizer instance only.
    """
    for p in self.params:
        if p.summed_grad is not None:
            p.summed_grad.add_(p.grad)
        else:
            p.summed_grad = p.grad.detach().clone()


def _speed_up_ghost_accumulation(optimizer: torch.optim.Optimizer) -> None:
    """Give a ghost-clipping DP optimizer the faster ``accumulate`` (other optimizers are left alone)."""
    if isinstance(optimizer, DPOptimizerFastGradientClipping):
        optimizer.accumulate = types.MethodType(_accumulate_by_clone, optimizer)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """A fresh torch optimizer for ``model``: Adam or SGD with momentum, at ``cfg.lr``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


def fresh_model(cfg: TrainConfig, data: SplitData) -> tuple[nn.Module, list[str]]:
    """(newly initialised model for ``cfg`` on ``data``, the Opacus fixes applied), as training builds it."""
    model = build_model(cfg.model, input_shape=data.info.input_shape, num_classes=data.info.num_classes)
    return make_private_compatible(model)


# ---------------------------------------------------------------------- random streams
_GLOBAL_RNG_LOCK = threading.Lock()  # held while a run seeds torch's global RNG and builds its model
# Config fields that change what a DP step computes. Fields that only change how the same step is
# computed (grad_sample_mode, physical_batch_size, device, epochs) stay out of the reproducible stream
# seed, so the same run computed two ways can still be compared bit for bit.
_STREAM_FIELDS = ("seed", "private", "target_epsilon", "noise_multiplier", "target_delta", "max_grad_norm")


def _reproducible_stream_seed(cfg: TrainConfig, *, steps_done: int, purpose: str) -> int:
    """A 64-bit seed derived from the seed, the privacy knobs, the steps already taken and ``purpose``.

    Only used when ``cfg.reproducible``. Hashing (rather than arithmetic such as ``seed * k + steps``)
    means no two (seed, epsilon, C, sigma, steps done) combinations share a stream: sweep members
    with one seed but another epsilon or C, and continuations (which have taken steps), all draw
    streams of their own, and none replays a parent's.
    """
    key: dict[str, Any] = {name: getattr(cfg, name) for name in _STREAM_FIELDS}
    for name in ("target_epsilon", "noise_multiplier", "target_delta", "max_grad_norm"):
        if key[name] is not None:
            key[name] = float(key[name])  # 3 and 3.0 are the same run
    key.update(steps_done=int(steps_done), purpose=purpose)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _random_streams(cfg: TrainConfig, *, resume: ResumeState | None,
                    device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(batch-sampling generator on the CPU, DP-noise generator on ``device``) for one training call.

    Why this matters: the guarantee holds only if the Gaussian noise and the Poisson batches are
    unknown to the attacker. Anyone who can regenerate them can retrain a released model bit for bit,
    with and without a record, and decide membership exactly; two runs sharing noise reveal the
    noise-free gradients. So by default each stream is seeded from ``secrets.randbits(64)`` (operating-
    system entropy), used once here and never stored, logged, returned or shown. The batch sampler
    (Opacus' DPDataLoader keeps the loader's generator; the non-Poisson shuffle uses it too) and the
    noise (an explicit generator on every device, CUDA included) never touch torch's global RNG, and
    the global torch and numpy RNGs are re-seeded from fresh entropy as well, so nothing else the run
    draws follows the public seed. ``cfg.seed`` still fixes the initial weights (seeded by the caller).

    With ``cfg.reproducible`` every stream follows the seed instead (tests and teaching; such a run
    is not private against anyone who knows the seed), derived by ``_reproducible_stream_seed`` from the
    seed, the privacy knobs and the steps a continuation's parent already took.
    """
    if cfg.reproducible:
        steps_done = resume.steps_done if resume is not None else 0
        loader_seed, noise_seed, global_seed = (
            _reproducible_stream_seed(cfg, steps_done=steps_done, purpose=ddp.stream_purpose(purpose))
            for purpose in ("batches", "noise", "global"))
    else:
        loader_seed, noise_seed, global_seed = (secrets.randbits(64) for _ in range(3))
    torch.manual_seed(global_seed)  # also seeds every CUDA device
    np.random.seed([global_seed & 0xFFFFFFFF, global_seed >> 32])
    loader_generator = torch.Generator().manual_seed(loader_seed)
    noise_generator = torch.Generator(device=device).manual_seed(noise_seed)
    del loader_seed, noise_seed, global_seed
    return loader_generator, noise_generator


# ---------------------------------------------------------------------- plan
@dataclass(eq=False)
class TrainingPlan:
    """Everything a training call decided before its first step (``plan_training`` builds it).

    ``model``, ``optimizer``, ``criterion`` and ``loader`` are Opacus-wrapped for private runs.
    ``epsilon_at[k]`` is the epsilon spent (at ``cfg.target_delta``) after ``k`` steps of this call
    (inf for the baseline); ``max_steps`` is the hard stop: the last step that keeps epsilon within
    ``cfg.epsilon_limit`` (``planned_steps`` without a limit). ``started`` is ``time.perf_counter()``.
    """

    cfg: TrainConfig
    data: SplitData
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    loader: DataLoader
    fixes: list[str]
    sample_rate: float
    planned_steps: int
    max_steps: int
    epsilon_at: np.ndarray
    prior_history: list[tuple[float, float, int]]
    prior_steps: int = 0
    prior_epochs: int = 0
    noise_multiplier: float | None = None
    grad_sample_mode: str | None = None
    engine: PrivacyEngine | None = None
    started: float = 0.0


def plan_training(cfg: TrainConfig, *, data: SplitData | None = None, resume: ResumeState | None = None,
                  started: float | None = None) -> TrainingPlan:
    """Validate ``cfg``, load ``data`` and build the ``TrainingPlan`` of one training call (see ``train``).

    Picks the device, seeds and builds the model, the optimizer and the random streams, calibrates
    sigma and wraps everything with Opacus for private runs, and computes the epsilon-at-step curve and
    the hard-stop step. Raises ConfigError or DatasetError for bad input before any training starts.
    """
    started = time.perf_counter() if started is None else started
    cfg = cfg.validate()
    if data is None:
        data = load_for_config(cfg)
    cfg = cfg.validate(n=data.n_members)
    device = resolve_device(cfg.device)

    # The seed fixes the initial weights only; every stream the guarantee relies on comes from
    # _random_streams (secret OS entropy unless cfg.reproducible), see its docstring.
    with _GLOBAL_RNG_LOCK:  # jobs train in threads: another run must not re-seed mid-initialisation
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        model, fixes = fresh_model(cfg, data)
        loader_generator, noise_generator = _random_streams(cfg, resume=resume, device=device)
    if resume is not None:
        model.load_state_dict(resume.model_state)
    model.to(device)
    optimizer = make_optimizer(cfg, model)
    if resume is not None and resume.optimizer_state:
        with contextlib.suppress(ValueError, KeyError):  # a changed optimizer starts fresh
            optimizer.load_state_dict(resume.optimizer_state)

    loader = DataLoader(data.members, batch_size=cfg.batch_size, shuffle=True, generator=loader_generator)
    planned_steps = len(loader) * cfg.epochs
    plan = TrainingPlan(
        cfg=cfg, data=data, device=device, model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
        loader=loader, fixes=fixes, sample_rate=1.0 / len(loader), planned_steps=planned_steps,
        max_steps=planned_steps, epsilon_at=np.full(planned_steps + 1, math.inf),
        prior_history=list(resume.accountant_history) if resume else [],
        prior_steps=resume.steps_done if resume else 0, prior_epochs=resume.epochs_done if resume else 0,
        started=started)
    if cfg.private:
        _make_private(plan, resume=resume, noise_generator=noise_generator)
    return plan


def _calibrate_noise(plan: TrainingPlan, *, resume: ResumeState | None) -> float:
    """Sigma for this call: a continuation keeps its parent's, else calibrated to the target epsilon, else given."""
    cfg = plan.cfg
    if resume is not None and resume.noise_multiplier is not None:
        return resume.noise_multiplier
    if cfg.target_epsilon is not None:
        return accounting.noise_for_epsilon(
            target_epsilon=cfg.target_epsilon, delta=cfg.target_delta, sample_rate=plan.sample_rate,
            steps=plan.planned_steps, accountant=cfg.accountant, prior=plan.prior_history)
    return float(cfg.noise_multiplier)


def _make_private(plan: TrainingPlan, *, resume: ResumeState | None, noise_generator: torch.Generator) -> None:
    """Calibrate sigma, wrap the plan's model/optimizer/loader with Opacus and fill in the epsilon curve (in place)."""
    cfg = plan.cfg
    plan.noise_multiplier = _calibrate_noise(plan, resume=resume)
    plan.grad_sample_mode = _choose_grad_sample_mode(cfg.grad_sample_mode, plan.model)
    plan.engine = PrivacyEngine(accountant=cfg.accountant)
    plan.engine.accountant.history = list(plan.prior_history)
    wrapped = plan.engine.make_private(
        module=ddp.wrap_model(plan.model), optimizer=plan.optimizer, criterion=plan.criterion,
        data_loader=plan.loader,
        noise_multiplier=plan.noise_multiplier, max_grad_norm=cfg.max_grad_norm,
        poisson_sampling=cfg.poisson_sampling, noise_generator=noise_generator,
        # book-keeping keeps ghost mode's data loader, optimizer (noise, scaling) and accountant hook
        grad_sample_mode="ghost" if plan.grad_sample_mode == "bookkeeping" else plan.grad_sample_mode)
    if plan.grad_sample_mode in ("ghost", "bookkeeping"):
        criterion = plan.criterion
        plan.model, plan.optimizer, plan.criterion, plan.loader = wrapped
        _speed_up_ghost_accumulation(plan.optimizer)
        if plan.grad_sample_mode == "bookkeeping":  # swap only the gradient computation
            plan.model, plan.criterion = use_bookkeeping(plan.model, criterion=criterion, optimizer=plan.optimizer,
                                                         max_grad_norm=cfg.max_grad_norm, data_loader=plan.loader)
    else:
        plan.model, plan.optimizer, plan.loader = wrapped
    plan.loader = ddp.keep_empty_batches(plan.loader)  # one process: unchanged
    plan.epsilon_at = np.concatenate([[accounting.schedule_epsilon(plan.prior_history, delta=cfg.target_delta,
                                                                   accountant=cfg.accountant)],
                                      accounting.epsilon_curve(
                                          noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                                          steps=np.arange(1, plan.planned_steps + 1), delta=cfg.target_delta,
                                          accountant=cfg.accountant, prior=plan.prior_history)])
    if cfg.epsilon_limit is not None:
        plan.max_steps = _hard_stop_step(plan)


def _hard_stop_step(plan: TrainingPlan) -> int:
    """The most steps this call may take with epsilon staying within ``cfg.epsilon_limit``."""
    cfg, prior = plan.cfg, plan.prior_history
    max_steps = min(plan.planned_steps, int(np.searchsorted(plan.epsilon_at, cfg.epsilon_limit, side="right")) - 1)
    if cfg.accountant == "prv" and max_steps > 0:
        # The PRV curve is interpolated between exact points: confirm the stop exactly, so the
        # hard limit holds even where the interpolation runs below the true epsilon.
        exact = accounting.schedule_epsilon([*prior, (plan.noise_multiplier, plan.sample_rate, max_steps)],
                                            delta=cfg.target_delta, accountant="prv")
        if exact > cfg.epsilon_limit:
            max_steps = accounting.max_steps_within(
                cfg.epsilon_limit, noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                delta=cfg.target_delta, accountant="prv", prior=prior, upper=max_steps)
    return max_steps


# ---------------------------------------------------------------------- loop
@dataclass
class _Progress:
    """What the loop has done so far: rows, status, logical steps of this call, the open logical batch."""

    step_rows: list[dict[str, Any]] = field(default_factory=list)
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = "finished"
    step: int = 0  # logical steps taken in this call
    clipped: int = 0  # in the logical batch being accumulated
    seen: int = 0
    loss_sum: float = 0.0


def _run_epochs(plan: TrainingPlan, progress: _Progress, *, on_step: StepCallback | None,
                on_epoch: StepCallback | None, should_stop: Callable[[], bool] | None,
                checkpoint_dir: str | Path | None) -> None:
    """Train epoch by epoch until done, cancelled, diverged or at the hard stop; record into ``progress``."""
    cfg = plan.cfg
    params = [p for p in plan.model.parameters() if p.requires_grad]
    plan.model.train()
    for epoch in range(plan.prior_epochs + 1, plan.prior_epochs + cfg.epochs + 1):
        with _batches(plan) as batches:
            for xb, yb in batches:
                if progress.seen == 0:  # a logical step starts here
                    stop = _stop_before_step(plan, progress, should_stop)
                    if stop is not None:
                        progress.status = stop
                        break
                if not _train_batch(plan, progress, params, xb, yb, epoch=epoch, on_step=on_step):
                    break
        if progress.status != "finished":
            break
        progress.epoch_rows.append(_epoch_row(plan, progress, epoch))
        if checkpoint_dir is not None:
            engine = plan.engine
            write_checkpoint(checkpoint_dir, model=plan.model, optimizer_state=_inner_optimizer_state(plan),
                             accountant_history=list(engine.accountant.history) if engine is not None else [],
                             noise_multiplier=plan.noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                             epochs_done=epoch, steps_done=plan.prior_steps + progress.step,
                             sample_rate=plan.sample_rate)
        if on_epoch is not None:
            on_epoch({**progress.epoch_rows[-1], "total_epochs": plan.prior_epochs + cfg.epochs})
        if progress.step >= plan.max_steps and plan.max_steps < plan.planned_steps:
            progress.status = "epsilon_limit"
            break


def _batches(plan: TrainingPlan) -> contextlib.AbstractContextManager[Any]:
    """The epoch's physical batches: through BatchMemoryManager when a private step is split, else the loader."""
    cfg = plan.cfg
    if cfg.private and cfg.physical_batch_size is not None and cfg.physical_batch_size < cfg.batch_size:
        return BatchMemoryManager(data_loader=plan.loader, max_physical_batch_size=cfg.physical_batch_size,
                                  optimizer=plan.optimizer)
    return contextlib.nullcontext(plan.loader)


def _stop_before_step(plan: TrainingPlan, progress: _Progress, should_stop: Callable[[], bool] | None) -> str | None:
    """The status to stop with before the next logical step ('cancelled', 'epsilon_limit', 'finished'), or None."""
    if should_stop is not None and should_stop():
        return "cancelled"
    if progress.step >= plan.max_steps:
        return "epsilon_limit" if progress.step < plan.planned_steps else "finished"
    return None


def _train_batch(plan: TrainingPlan, progress: _Progress, params: list[nn.Parameter], xb: torch.Tensor,
                 yb: torch.Tensor, *, epoch: int, on_step: StepCallback | None) -> bool:
    """One physical batch: forward, backward, optimizer step; a finished logical step is recorded and reported.

    Returns False (status 'diverged') when the loss is NaN or infinite, True otherwise.
    """
    cfg, model = plan.cfg, plan.model
    xb, yb = xb.to(plan.device, non_blocking=True), yb.to(plan.device, non_blocking=True)
    batch = len(xb)
    if batch:
        loss = plan.criterion(model(xb), yb)
        loss_value = float(loss.item())
        if not math.isfinite(loss_value) and not ddp.is_distributed():  # ranks agree after the step (below)
            progress.status = "diverged"
            return False
        loss.backward()
        if cfg.private:
            norms = (model.per_sample_gradient_norms if plan.grad_sample_mode in ("ghost", "bookkeeping")
                     else hooks_sample_norms(params))
            if norms is not None:
                progress.clipped += count_above(norms, cfg.max_grad_norm)
        progress.loss_sum += loss_value * batch
        progress.seen += batch
    elif cfg.private:  # an empty Poisson batch: no gradient, only the noise (Opacus needs zero-sized inputs)
        for param in params:
            if plan.grad_sample_mode in ("ghost", "bookkeeping"):
                param.grad = torch.zeros_like(param)
            else:
                param.grad_sample = param.new_zeros((0, *param.shape))
    plan.optimizer.step()
    plan.optimizer.zero_grad(set_to_none=True)
    if cfg.private and plan.optimizer._is_last_step_skipped:
        return True  # BatchMemoryManager: the logical batch is not complete yet
    progress.step += 1
    clipped, seen, loss_sum = ddp.global_counts(progress.clipped, progress.seen, progress.loss_sum)
    if not math.isfinite(loss_sum):  # several processes: every rank learns it here and stops together
        progress.status = "diverged"
        return False
    row = {
        "step": plan.prior_steps + progress.step,
        "epoch": epoch,
        "epsilon": float(plan.epsilon_at[progress.step]),
        "clip_fraction": clipped / seen if cfg.private and seen else math.nan,
        "loss": loss_sum / seen if seen else math.nan,
        "batch_size": seen,
    }
    progress.step_rows.append(row)
    progress.clipped = progress.seen = 0
    progress.loss_sum = 0.0
    if on_step is not None:
        on_step({**row, "total_steps": plan.prior_steps + plan.max_steps,
                 "elapsed_s": time.perf_counter() - plan.started})
    return True


def _epoch_row(plan: TrainingPlan, progress: _Progress, epoch: int) -> dict[str, Any]:
    """The epoch table row for ``epoch``: epsilon so far, mean step loss, train/test/validation accuracy, and the
    loss attack's ``mia_auc`` / ``mia_tpr_at_1pct_fpr`` from the same per-example pass as the accuracies."""
    data, model, device = plan.data, plan.model, plan.device
    losses = [row["loss"] for row in progress.step_rows if row["epoch"] == epoch and not math.isnan(row["loss"])]
    members = membership.example_losses(model, data.x_members, data.y_members, device=device)
    non_members = membership.example_losses(model, data.x_non_members, data.y_non_members, device=device)
    validation_accuracy = (evaluate(model, data.x_validation, data.y_validation, device=device)[1]
                           if data.n_validation else math.nan)
    return {"epoch": epoch, "epsilon": float(plan.epsilon_at[progress.step]),
            "train_loss": float(np.mean(losses)) if losses else members.mean_loss,
            "train_accuracy": members.accuracy, "test_accuracy": non_members.accuracy,
            "validation_accuracy": validation_accuracy,
            **membership.loss_attack_metrics(members.losses, non_members.losses)}


def _inner_optimizer_state(plan: TrainingPlan) -> dict[str, Any]:
    """The state of the torch optimizer inside Opacus' DP optimizer (or of the plain one)."""
    return getattr(plan.optimizer, "original_optimizer", plan.optimizer).state_dict()


# ---------------------------------------------------------------------- finish
def _finish(plan: TrainingPlan, progress: _Progress) -> RunResult:
    """Close the run: last epoch row, exact final epsilon, an unwrapped eval-mode model copy, the RunResult."""
    cfg = plan.cfg
    step_rows, epoch_rows = progress.step_rows, progress.epoch_rows
    if step_rows and (not epoch_rows or epoch_rows[-1]["epoch"] != step_rows[-1]["epoch"]):
        # A run that stopped mid-epoch still reports where it left the model.
        epoch_rows.append(_epoch_row(plan, progress, step_rows[-1]["epoch"]))

    accountant_history = list(plan.engine.accountant.history) if plan.engine is not None else []
    if plan.engine is not None:
        final_epsilon = accounting.schedule_epsilon(accountant_history, delta=cfg.target_delta,
                                                    accountant=cfg.accountant)
        if step_rows:
            step_rows[-1]["epsilon"] = final_epsilon  # PRV curves interpolate; the last point is exact
        if epoch_rows:
            epoch_rows[-1]["epsilon"] = final_epsilon
    else:
        final_epsilon = math.inf

    inner = ddp.unwrap(getattr(plan.model, "_module", plan.model))
    clean_model, _ = fresh_model(cfg, plan.data)
    clean_model.load_state_dict({key: value.detach().cpu() for key, value in inner.state_dict().items()})
    clean_model.eval()
    # ONE pass of this CPU copy (GPU logits differ in the last bits) for the last row, the job's attack and outputs
    final_logits = membership.membership_logits(clean_model, plan.data) if epoch_rows else None
    if final_logits is not None:
        epoch_rows[-1].update(membership.logits_attack_metrics(final_logits))
    optimizer_state = _inner_optimizer_state(plan)
    if plan.engine is not None and hasattr(plan.model, "_close"):
        plan.model._close()  # remove Opacus hooks from the training copy

    steps = plan.prior_steps + progress.step
    stop_reason = STOP_REASONS[progress.status].format(epochs=cfg.epochs, steps=steps,
                                                       limit=cfg.epsilon_limit or 0.0)
    return RunResult(
        config=cfg, status=progress.status, stop_reason=stop_reason, final_epsilon=final_epsilon,
        noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=steps,
        history=pd.DataFrame(step_rows, columns=HISTORY_COLUMNS),
        epochs=pd.DataFrame(epoch_rows, columns=EPOCH_COLUMNS),
        model=clean_model, data=plan.data, device=describe_device(plan.device) + ddp.describe_world(),
        grad_sample_mode=plan.grad_sample_mode, fixes=plan.fixes, seconds=time.perf_counter() - plan.started,
        accountant_history=[tuple(seg) for seg in accountant_history], optimizer_state=optimizer_state,
        epochs_done=epoch_rows[-1]["epoch"] if epoch_rows else plan.prior_epochs, final_logits=final_logits,
    )


# ---------------------------------------------------------------------- train
def train(cfg: TrainConfig, on_step: StepCallback | None = None, on_epoch: StepCallback | None = None,
          should_stop: Callable[[], bool] | None = None, *, resume: ResumeState | None = None,
          data: SplitData | None = None, checkpoint_dir: str | Path | None = None,
          threads: int | None = None) -> RunResult:
    """Train ``cfg`` and return a ``RunResult``.

    ``on_step`` receives one dict per logical optimizer step (step, epoch, epsilon,
    clip_fraction, loss, batch_size, total_steps, elapsed_s); ``on_epoch`` one per
    epoch (epoch, epsilon, train_loss, train_accuracy, test_accuracy, validation_accuracy,
    mia_auc, mia_tpr_at_1pct_fpr: the loss attack after the epoch, ``engine.membership``; total_epochs).
    ``should_stop`` is polled before every step; returning True ends the run as
    'cancelled'. ``resume`` continues a saved run for ``cfg.epochs`` more epochs:
    the noise multiplier and the spent budget carry over. ``cfg.seed`` fixes the initial
    weights; the DP noise and the batch sampling come from secret OS entropy unless
    ``cfg.reproducible`` (see ``_random_streams``). ``data`` skips loading
    (callers that already hold the split, e.g. reference-model pools) and is used as given:
    every member is trained on. Without it, ``load_for_config`` holds out ``cfg.validation_fraction``
    of the members as the validation set, and N (delta < 1/N, sampling) counts the rest. ``checkpoint_dir``
    gets a ``checkpoint.pt`` at every epoch end, so a run killed mid-way can be continued.
    ``threads`` sets torch's CPU threads for the training (restored afterwards); None picks them by
    ``dpcore.engine.threads.training_threads``: what the user set ($DPEXPLORER_THREADS, OMP_NUM_THREADS, a
    ``torch.set_num_threads`` call), else 1 for a small model and at most the free cores otherwise.
    Under torchrun (``dpcore.engine.ddp``: one training across processes/GPUs) every rank calls ``train``;
    each gets the same rows (global step counts) and result. Raises ConfigError or DatasetError for bad
    input before any training starts.
    """
    plan = plan_training(cfg, data=data, resume=resume, started=time.perf_counter())
    progress = _Progress()
    n_params = sum(p.numel() for p in plan.model.parameters())
    with training_threads(threads=threads, model_params=n_params):
        _run_epochs(plan, progress, on_step=on_step, on_epoch=on_epoch, should_stop=ddp.shared_stop(should_stop),
                    checkpoint_dir=checkpoint_dir)
        return _finish(plan, progress)
