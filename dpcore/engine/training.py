"""The DP-SGD trainer: one function, ``train(cfg)``, for private runs and their non-private baseline.

It builds data, model and optimizer from a ``TrainConfig``; for private runs it
calibrates (or takes) the noise multiplier, wraps everything with Opacus'
``PrivacyEngine``, and records per logical step the epsilon spent, the fraction
of per-sample gradients clipped and the loss. It stops cleanly on cancel, on a
diverging loss, or before a step would take epsilon past ``epsilon_limit``.
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
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch import nn
from torch.utils.data import DataLoader

from dpcore.config import TrainConfig
from dpcore.engine.data import SplitData, load_for_config
from dpcore.engine.models import build_model, make_private_compatible
from dpcore.errors import ConfigError
from dpcore.privacy import accounting

StepCallback = Callable[[dict[str, Any]], None]
HISTORY_COLUMNS = ["step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size"]
# validation_accuracy: on the member-side slice held out of training (cfg.validation_fraction); NaN without one.
EPOCH_COLUMNS = ["epoch", "epsilon", "train_loss", "train_accuracy", "test_accuracy", "validation_accuracy"]
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


def describe_device(device: torch.device) -> str:
    """Human description, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


@dataclass
class ResumeState:
    """What a checkpoint carries to continue a run: weights, optimizer, spent budget, position."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    accountant_history: list[tuple[float, float, int]]
    noise_multiplier: float | None
    epochs_done: int
    steps_done: int
    sample_rate: float | None = None

    @classmethod
    def load(cls, directory: str | Path) -> ResumeState:
        """Read ``checkpoint.pt`` written by ``RunResult.save`` (weights_only: no code is unpickled)."""
        path = Path(directory) / "checkpoint.pt"
        if not path.exists():
            raise ConfigError(f"no checkpoint at {path}: only runs saved by this version can be resumed")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(
            model_state=state["model_state"],
            optimizer_state=state["optimizer_state"],
            accountant_history=[(float(s), float(q), int(n)) for s, q, n in state["accountant_history"]],
            noise_multiplier=state["noise_multiplier"],
            epochs_done=int(state["epochs_done"]),
            steps_done=int(state["steps_done"]),
            sample_rate=state.get("sample_rate"),
        )


def write_checkpoint(directory: str | Path, *, model: nn.Module, optimizer_state: dict[str, Any],
                     accountant_history: list[tuple[float, float, int]], noise_multiplier: float | None,
                     max_grad_norm: float, epochs_done: int, steps_done: int, sample_rate: float) -> Path:
    """Write ``checkpoint.pt`` (what ``ResumeState.load`` reads) atomically; return its path.

    Opacus' own checkpoint keeps the accountant history but not sigma or max_grad_norm,
    so this one stores them too. Only tensors and plain data: loadable with weights_only.
    """
    path = Path(directory) / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = getattr(model, "_module", model)  # Opacus wraps the model during training
    payload = {
        "model_state": {key: value.detach().cpu() for key, value in inner.state_dict().items()},
        "optimizer_state": optimizer_state,
        "accountant_history": [list(segment) for segment in accountant_history],
        "noise_multiplier": noise_multiplier,
        "max_grad_norm": max_grad_norm,
        "epochs_done": epochs_done,
        "steps_done": steps_done,
        "sample_rate": sample_rate,
    }
    scratch = path.with_suffix(".pt.tmp")
    torch.save(payload, scratch)
    scratch.replace(path)  # a crash mid-write never leaves a truncated checkpoint behind
    return path


@dataclass
class RunResult:
    """Everything a run produced, as plain data plus the trained model.

    ``final_epsilon`` is the epsilon spent at ``config.target_delta`` by the
    accountant named in the config (``math.inf`` for the non-private baseline).
    """

    config: TrainConfig
    status: str
    stop_reason: str
    final_epsilon: float
    noise_multiplier: float | None
    sample_rate: float
    steps: int
    history: pd.DataFrame
    epochs: pd.DataFrame
    model: nn.Module
    data: SplitData
    device: str
    grad_sample_mode: str | None
    fixes: list[str]
    seconds: float
    accountant_history: list[tuple[float, float, int]] = field(default_factory=list)
    optimizer_state: dict[str, Any] = field(default_factory=dict, repr=False)
    epochs_done: int = 0

    @property
    def test_accuracy(self) -> float:
        """Accuracy on the held-out non-members after the last epoch (NaN if no epoch finished)."""
        return float(self.epochs["test_accuracy"].iloc[-1]) if len(self.epochs) else math.nan

    @property
    def validation_accuracy(self) -> float:
        """Accuracy on the validation slice held out of the members after the last epoch.

        NaN when the run had no validation set (``validation_fraction`` 0) or no epoch finished.
        Choices among runs (the sweep frontier) are made on this, never on test accuracy.
        """
        if not len(self.epochs) or "validation_accuracy" not in self.epochs.columns:
            return math.nan
        return float(self.epochs["validation_accuracy"].iloc[-1])

    @property
    def train_accuracy(self) -> float:
        """Accuracy on the training members after the last epoch (NaN if no epoch finished)."""
        return float(self.epochs["train_accuracy"].iloc[-1]) if len(self.epochs) else math.nan

    @property
    def final_clip_fraction(self) -> float:
        """Mean clip fraction over the last epoch's steps (NaN for the baseline)."""
        if self.history.empty:
            return math.nan
        last = self.history[self.history["epoch"] == self.history["epoch"].max()]
        return float(last["clip_fraction"].mean())

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers describing the run (no arrays, no model)."""
        cfg = self.config
        own_steps = len(self.history)
        return {
            "label": cfg.label(),
            "dataset": cfg.dataset,
            "model": cfg.model,
            "mode": cfg.mode,
            "private": cfg.private,
            "reproducible": cfg.reproducible,
            "target_epsilon": cfg.target_epsilon,
            "target_delta": cfg.target_delta,
            "epsilon_limit": cfg.epsilon_limit,
            "final_epsilon": json_number(self.final_epsilon),
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": cfg.max_grad_norm,
            "accountant": cfg.accountant if cfg.private else None,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "epochs_done": self.epochs_done,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "train_accuracy": json_number(self.train_accuracy),
            "test_accuracy": json_number(self.test_accuracy),
            "validation_accuracy": json_number(self.validation_accuracy),
            "final_clip_fraction": json_number(self.final_clip_fraction),
            "device": self.device,
            "grad_sample_mode": self.grad_sample_mode,
            "fixes": list(self.fixes),
            "seconds": round(self.seconds, 3),
            "ms_per_step": round(1000 * self.seconds / own_steps, 3) if own_steps else None,
            "n_members": self.data.info.n_members,
            "n_non_members": self.data.info.n_non_members,
            "n_validation": self.data.n_validation,
        }

    def save(self, directory: str | Path) -> Path:
        """Write model.pt, checkpoint.pt, history.csv, epochs.csv and summary.json into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self.model.state_dict().items()}
        torch.save(state, directory / "model.pt")
        write_checkpoint(directory, model=self.model, optimizer_state=self.optimizer_state,
                         accountant_history=self.accountant_history, noise_multiplier=self.noise_multiplier,
                         max_grad_norm=self.config.max_grad_norm, epochs_done=self.epochs_done,
                         steps_done=self.steps, sample_rate=self.sample_rate)
        self.history.to_csv(directory / "history.csv", index=False)
        self.epochs.to_csv(directory / "epochs.csv", index=False)
        (directory / "summary.json").write_text(json.dumps(
            {"config": self.config.to_dict(), "summary": self.summary()}, indent=2))
        return directory


def json_number(value: float | None) -> float | None:
    """Finite floats pass; NaN and infinities become None (JSON has no such numbers)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


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
    """'auto' means ghost clipping (fast, flat clipping) unless parameters are shared, which ghost rejects."""
    if requested != "auto":
        return requested
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                return "hooks"
            seen.add(id(param))
    return "ghost"


def _hooks_sample_norms(params: list[nn.Parameter]) -> torch.Tensor | None:
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
    from opacus.optimizers.optimizer_fast_gradient_clipping import DPOptimizerFastGradientClipping

    if isinstance(optimizer, DPOptimizerFastGradientClipping):
        optimizer.accumulate = types.MethodType(_accumulate_by_clone, optimizer)


def _make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
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
            _reproducible_stream_seed(cfg, steps_done=steps_done, purpose=purpose)
            for purpose in ("batches", "noise", "global"))
    else:
        loader_seed, noise_seed, global_seed = (secrets.randbits(64) for _ in range(3))
    torch.manual_seed(global_seed)  # also seeds every CUDA device
    np.random.seed([global_seed & 0xFFFFFFFF, global_seed >> 32])
    loader_generator = torch.Generator().manual_seed(loader_seed)
    noise_generator = torch.Generator(device=device).manual_seed(noise_seed)
    del loader_seed, noise_seed, global_seed
    return loader_generator, noise_generator


# ---------------------------------------------------------------------- train
def train(cfg: TrainConfig, on_step: StepCallback | None = None, on_epoch: StepCallback | None = None,
          should_stop: Callable[[], bool] | None = None, *, resume: ResumeState | None = None,
          data: SplitData | None = None, checkpoint_dir: str | Path | None = None) -> RunResult:
    """Train ``cfg`` and return a ``RunResult``.

    ``on_step`` receives one dict per logical optimizer step (step, epoch, epsilon,
    clip_fraction, loss, batch_size, total_steps, elapsed_s); ``on_epoch`` one per
    epoch (epoch, epsilon, train_loss, train_accuracy, test_accuracy, validation_accuracy,
    total_epochs).
    ``should_stop`` is polled before every step; returning True ends the run as
    'cancelled'. ``resume`` continues a saved run for ``cfg.epochs`` more epochs:
    the noise multiplier and the spent budget carry over. ``cfg.seed`` fixes the initial
    weights; the DP noise and the batch sampling come from secret OS entropy unless
    ``cfg.reproducible`` (see ``_random_streams``). ``data`` skips loading
    (callers that already hold the split, e.g. reference-model pools) and is used as given:
    every member is trained on. Without it, ``load_for_config`` holds out ``cfg.validation_fraction``
    of the members as the validation set, and N (delta < 1/N, sampling) counts the rest. ``checkpoint_dir``
    gets a ``checkpoint.pt`` at every epoch end, so a run killed mid-way can be continued.
    Raises ConfigError or DatasetError for bad input before any training starts.
    """
    started = time.perf_counter()
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
    optimizer = _make_optimizer(cfg, model)
    if resume is not None and resume.optimizer_state:
        with contextlib.suppress(ValueError, KeyError):  # a changed optimizer starts fresh
            optimizer.load_state_dict(resume.optimizer_state)

    loader = DataLoader(data.members, batch_size=cfg.batch_size, shuffle=True, generator=loader_generator)
    steps_per_epoch = len(loader)
    sample_rate = 1.0 / steps_per_epoch
    planned_steps = steps_per_epoch * cfg.epochs
    prior_history = list(resume.accountant_history) if resume else []
    prior_steps = resume.steps_done if resume else 0
    prior_epochs = resume.epochs_done if resume else 0

    criterion = nn.CrossEntropyLoss()
    noise_multiplier: float | None = None
    grad_sample_mode: str | None = None
    engine: PrivacyEngine | None = None
    max_steps = planned_steps
    epsilon_at = np.full(planned_steps + 1, math.inf)
    if cfg.private:
        if resume is not None and resume.noise_multiplier is not None:
            noise_multiplier = resume.noise_multiplier
        elif cfg.target_epsilon is not None:
            noise_multiplier = accounting.noise_for_epsilon(
                target_epsilon=cfg.target_epsilon, delta=cfg.target_delta, sample_rate=sample_rate,
                steps=planned_steps, accountant=cfg.accountant, prior=prior_history)
        else:
            noise_multiplier = float(cfg.noise_multiplier)
        grad_sample_mode = _choose_grad_sample_mode(cfg.grad_sample_mode, model)
        engine = PrivacyEngine(accountant=cfg.accountant)
        engine.accountant.history = list(prior_history)
        wrapped = engine.make_private(
            module=model, optimizer=optimizer, criterion=criterion, data_loader=loader,
            noise_multiplier=noise_multiplier, max_grad_norm=cfg.max_grad_norm,
            poisson_sampling=cfg.poisson_sampling, grad_sample_mode=grad_sample_mode,
            noise_generator=noise_generator)
        if grad_sample_mode == "ghost":
            model, optimizer, criterion, loader = wrapped
            _speed_up_ghost_accumulation(optimizer)
        else:
            model, optimizer, loader = wrapped
        epsilon_at = np.concatenate([[accounting.schedule_epsilon(prior_history, delta=cfg.target_delta,
                                                                  accountant=cfg.accountant)],
                                     accounting.epsilon_curve(
                                         noise_multiplier=noise_multiplier, sample_rate=sample_rate,
                                         steps=np.arange(1, planned_steps + 1), delta=cfg.target_delta,
                                         accountant=cfg.accountant, prior=prior_history)])
        if cfg.epsilon_limit is not None:
            max_steps = min(planned_steps, int(np.searchsorted(epsilon_at, cfg.epsilon_limit, side="right")) - 1)
            if cfg.accountant == "prv" and max_steps > 0:
                # The PRV curve is interpolated between exact points: confirm the stop exactly, so the
                # hard limit holds even where the interpolation runs below the true epsilon.
                exact = accounting.schedule_epsilon([*prior_history, (noise_multiplier, sample_rate, max_steps)],
                                                    delta=cfg.target_delta, accountant="prv")
                if exact > cfg.epsilon_limit:
                    max_steps = accounting.max_steps_within(
                        cfg.epsilon_limit, noise_multiplier=noise_multiplier, sample_rate=sample_rate,
                        delta=cfg.target_delta, accountant="prv", prior=prior_history, upper=max_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    use_memory_manager = (cfg.private and cfg.physical_batch_size is not None
                          and cfg.physical_batch_size < cfg.batch_size)
    step_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    status = "finished"
    step = 0  # logical steps taken in this call
    clipped = seen = 0
    loss_sum = 0.0
    model.train()

    def _epoch_row(epoch: int) -> dict[str, Any]:
        losses = [row["loss"] for row in step_rows if row["epoch"] == epoch and not math.isnan(row["loss"])]
        train_loss, train_accuracy = evaluate(model, data.x_members, data.y_members, device=device)
        _, test_accuracy = evaluate(model, data.x_non_members, data.y_non_members, device=device)
        validation_accuracy = (evaluate(model, data.x_validation, data.y_validation, device=device)[1]
                               if data.n_validation else math.nan)
        return {"epoch": epoch, "epsilon": float(epsilon_at[step]),
                "train_loss": float(np.mean(losses)) if losses else train_loss,
                "train_accuracy": train_accuracy, "test_accuracy": test_accuracy,
                "validation_accuracy": validation_accuracy}

    for epoch in range(prior_epochs + 1, prior_epochs + cfg.epochs + 1):
        memory_manager = (BatchMemoryManager(data_loader=loader, max_physical_batch_size=cfg.physical_batch_size,
                                             optimizer=optimizer)
                          if use_memory_manager else contextlib.nullcontext(loader))
        with memory_manager as batches:
            for xb, yb in batches:
                at_step_start = seen == 0
                if at_step_start and should_stop is not None and should_stop():
                    status = "cancelled"
                    break
                if at_step_start and step >= max_steps:
                    status = "epsilon_limit" if step < planned_steps else "finished"
                    break
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                batch = len(xb)
                if batch:
                    loss = criterion(model(xb), yb)
                    loss_value = float(loss.item())
                    if not math.isfinite(loss_value):
                        status = "diverged"
                        break
                    loss.backward()
                    if cfg.private:
                        norms = (model.per_sample_gradient_norms if grad_sample_mode == "ghost"
                                 else _hooks_sample_norms(params))
                        if norms is not None:
                            clipped += int((norms > cfg.max_grad_norm).sum())
                    loss_sum += loss_value * batch
                    seen += batch
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if cfg.private and optimizer._is_last_step_skipped:
                    continue  # BatchMemoryManager: the logical batch is not complete yet
                step += 1
                row = {
                    "step": prior_steps + step,
                    "epoch": epoch,
                    "epsilon": float(epsilon_at[step]),
                    "clip_fraction": clipped / seen if cfg.private and seen else math.nan,
                    "loss": loss_sum / seen if seen else math.nan,
                    "batch_size": seen,
                }
                step_rows.append(row)
                clipped = seen = 0
                loss_sum = 0.0
                if on_step is not None:
                    on_step({**row, "total_steps": prior_steps + max_steps,
                             "elapsed_s": time.perf_counter() - started})
        if status != "finished":
            break
        epoch_rows.append(_epoch_row(epoch))
        if checkpoint_dir is not None:
            write_checkpoint(checkpoint_dir, model=model,
                             optimizer_state=getattr(optimizer, "original_optimizer", optimizer).state_dict(),
                             accountant_history=list(engine.accountant.history) if engine is not None else [],
                             noise_multiplier=noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                             epochs_done=epoch, steps_done=prior_steps + step, sample_rate=sample_rate)
        if on_epoch is not None:
            on_epoch({**epoch_rows[-1], "total_epochs": prior_epochs + cfg.epochs})
        if step >= max_steps and max_steps < planned_steps:
            status = "epsilon_limit"
            break

    if step_rows and (not epoch_rows or epoch_rows[-1]["epoch"] != step_rows[-1]["epoch"]):
        # A run that stopped mid-epoch still reports where it left the model.
        epoch_rows.append(_epoch_row(step_rows[-1]["epoch"]))

    accountant_history = list(engine.accountant.history) if engine is not None else []
    if engine is not None:
        final_epsilon = accounting.schedule_epsilon(accountant_history, delta=cfg.target_delta,
                                                    accountant=cfg.accountant)
        if step_rows:
            step_rows[-1]["epsilon"] = final_epsilon  # PRV curves interpolate; the last point is exact
        if epoch_rows:
            epoch_rows[-1]["epsilon"] = final_epsilon
    else:
        final_epsilon = math.inf

    inner = getattr(model, "_module", model)
    clean_model, _ = fresh_model(cfg, data)
    clean_model.load_state_dict({key: value.detach().cpu() for key, value in inner.state_dict().items()})
    clean_model.eval()
    optimizer_state = getattr(optimizer, "original_optimizer", optimizer).state_dict()
    if engine is not None and hasattr(model, "_close"):
        model._close()  # remove Opacus hooks from the training copy

    stop_reason = STOP_REASONS[status].format(epochs=cfg.epochs, steps=prior_steps + step,
                                              limit=cfg.epsilon_limit or 0.0)
    return RunResult(
        config=cfg,
        status=status,
        stop_reason=stop_reason,
        final_epsilon=final_epsilon,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=prior_steps + step,
        history=pd.DataFrame(step_rows, columns=HISTORY_COLUMNS),
        epochs=pd.DataFrame(epoch_rows, columns=EPOCH_COLUMNS),
        model=clean_model,
        data=data,
        device=describe_device(device),
        grad_sample_mode=grad_sample_mode,
        fixes=fixes,
        seconds=time.perf_counter() - started,
        accountant_history=[tuple(seg) for seg in accountant_history],
        optimizer_state=optimizer_state,
        epochs_done=epoch_rows[-1]["epoch"] if epoch_rows else prior_epochs,
    )


# ---------------------------------------------------------------------- clipping-bound probe
def probe_grad_norms(cfg: TrainConfig, *, steps: int = 30, data: SplitData | None = None) -> np.ndarray:
    """Per-sample gradient norms seen over ``steps`` short training steps without noise or clipping.

    The model trains as usual (same model, optimizer, batch size, seed) so the
    norms reflect the early phase of a real run. Note: the probe looks at the
    training data without privacy; a careful deployment probes on public data.
    Returns a 1-D float array, one norm per example seen.
    """
    cfg = cfg.validate()
    if data is None:
        data = load_for_config(cfg)
    cfg = cfg.validate(n=data.n_members)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, _ = fresh_model(cfg, data)
    model.to(device)
    optimizer = _make_optimizer(cfg, model)
    loader = DataLoader(data.members, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    engine = PrivacyEngine(accountant="rdp")
    model, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
        max_grad_norm=1e9, poisson_sampling=False, grad_sample_mode="hooks")
    params = [p for p in model.parameters() if p.requires_grad]
    criterion = nn.CrossEntropyLoss()
    norms: list[np.ndarray] = []
    taken = 0
    while taken < steps:
        for xb, yb in loader:
            loss = criterion(model(xb.to(device)), yb.to(device))
            loss.backward()
            sample_norms = _hooks_sample_norms(params)
            if sample_norms is not None:
                norms.append(sample_norms.detach().cpu().numpy())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            taken += 1
            if taken >= steps:
                break
    model._close()
    return np.concatenate(norms) if norms else np.zeros(0)


def suggest_max_grad_norm(norms: np.ndarray, *, clip_fraction: float = 0.65) -> float:
    """A clipping bound that clips ``clip_fraction`` of the probed norms (the seed's advice: 50-80 %).

    Rounded to two significant figures so it reads well in a form.
    """
    if len(norms) == 0:
        raise ConfigError("no gradient norms were measured; the probe needs at least one step")
    bound = float(np.quantile(np.asarray(norms, dtype=float), 1.0 - clip_fraction))
    if bound <= 0:
        return 1e-3
    digits = 1 - math.floor(math.log10(bound))
    return float(round(bound, digits))
