"""Checkpoints: what a run writes at every epoch end so it can be continued, and ``ResumeState`` that reads it.

Opacus' own checkpoint keeps the accountant history but not sigma or max_grad_norm, so
``checkpoint.pt`` stores them too. Only tensors and plain data: it loads with ``weights_only``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpcore.atomic import atomic_write
from dpcore.engine.ddp import unwrap
from dpcore.errors import ConfigError

CHECKPOINT_FILE = "checkpoint.pt"


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
        path = Path(directory) / CHECKPOINT_FILE
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


def checkpoint_history(directory: str | Path | None) -> list[tuple[float, float, int]] | None:
    """The exact ``(noise_multiplier, sample_rate, steps)`` segments in ``directory``'s ``checkpoint.pt``
    (continuations included), or None when there is no folder, no checkpoint or it cannot be read."""
    if directory is None or not (Path(directory) / CHECKPOINT_FILE).is_file():
        return None
    try:
        return ResumeState.load(directory).accountant_history
    except (ConfigError, OSError, KeyError, ValueError, RuntimeError):
        return None  # an unreadable checkpoint: callers fall back to the summary's schedule


def write_checkpoint(directory: str | Path, *, model: nn.Module, optimizer_state: dict[str, Any],
                     accountant_history: list[tuple[float, float, int]], noise_multiplier: float | None,
                     max_grad_norm: float, epochs_done: int, steps_done: int, sample_rate: float) -> Path:
    """Write ``checkpoint.pt`` (what ``ResumeState.load`` reads) atomically into ``directory``; return its path.

    A crash mid-write never leaves a truncated checkpoint behind (``dpcore.atomic``).
    """
    inner = unwrap(getattr(model, "_module", model))  # Opacus (and DPDDP) wrap the model during training
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
    return atomic_write(Path(directory) / CHECKPOINT_FILE, lambda handle: torch.save(payload, handle))
