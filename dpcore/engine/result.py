"""What a training call returns: ``RunResult`` (plain data plus the trained model) and how it is saved."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from dpcore.atomic import atomic_write, atomic_write_text
from dpcore.config import TrainConfig
from dpcore.engine.checkpoint import write_checkpoint
from dpcore.engine.data import SplitData
from dpcore.engine.membership import MembershipLogits
from dpcore.jsonable import json_number

HISTORY_COLUMNS = ["step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size"]
# validation_accuracy: on the member-side slice held out of training (cfg.validation_fraction); NaN without one.
# mia_auc, mia_tpr_at_1pct_fpr: the loss-threshold membership attack on the model after the epoch (engine.membership);
# the last row's equal the run's summary numbers. Runs stored before these columns read NaN there.
EPOCH_COLUMNS = ["epoch", "epsilon", "train_loss", "train_accuracy", "test_accuracy", "validation_accuracy",
                 "mia_auc", "mia_tpr_at_1pct_fpr"]


@dataclass
class RunResult:
    """Everything a run produced, as plain data plus the trained model.

    ``final_epsilon`` is the epsilon spent at ``config.target_delta`` by the
    accountant named in the config (``math.inf`` for the non-private baseline).
    ``final_logits``: the run end's one eval pass of ``model`` over ``data``'s members and non-members (float64
    logits, ``engine.membership.membership_logits``), which the last epoch row's attack numbers came from and
    which the job's attack and per-example outputs reuse; None when no epoch row was made. Not saved. Set it to
    None after changing ``model``'s weights or ``data``, so that readers evaluate the model again.
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
    final_logits: MembershipLogits | None = field(default=None, repr=False, compare=False)

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

    @property
    def median_clip_fraction(self) -> float:
        """Median over every step of the fraction of per-sample gradients clipped (NaN for the baseline)."""
        if self.history.empty:
            return math.nan
        values = self.history["clip_fraction"].dropna()
        return float(values.median()) if len(values) else math.nan

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
            "median_clip_fraction": json_number(self.median_clip_fraction),
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
        atomic_write(directory / "model.pt", lambda handle: torch.save(state, handle))
        write_checkpoint(directory, model=self.model, optimizer_state=self.optimizer_state,
                         accountant_history=self.accountant_history, noise_multiplier=self.noise_multiplier,
                         max_grad_norm=self.config.max_grad_norm, epochs_done=self.epochs_done,
                         steps_done=self.steps, sample_rate=self.sample_rate)
        self.history.to_csv(directory / "history.csv", index=False)
        self.epochs.to_csv(directory / "epochs.csv", index=False)
        atomic_write_text(directory / "summary.json", json.dumps(
            {"config": self.config.to_dict(), "summary": self.summary()}, indent=2))
        return directory
