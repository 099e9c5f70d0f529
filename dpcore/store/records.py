"""``StoredRun``: the one typed view of a stored run. Every reader (pages, views, jobs, CLI) uses it
instead of walking a ``RunRecord``'s ``config`` and ``summary`` dicts.

Build one with ``StoredRun.load(store, run_id)`` (RunNotFound for an unknown id),
``StoredRun.from_record(record, store=store)`` (``store`` optional: without it there are no
metrics and no ROC), or ``StoredRun.all(store, kind="train")``.

Conventions: measured numbers are floats, NaN when unknown (like the metric frames);
config knobs that may be unset are ``float | None``; a non-private run (a baseline) has
``final_epsilon = inf`` and None/NaN for every DP knob. Old stored dicts never raise: unknown
keys are ignored, a missing ``private`` means private, a missing ``reproducible`` means a run
stored before the DP noise became secret (its noise followed the seed: reproducible).

API of ``run = StoredRun.load(store, run_id)``:

- record data: ``id``, ``name``, ``kind``, ``group``, ``status``, ``stop_status``, ``stop_reason``,
  ``error_message``, ``created``, ``finished``, ``device``, ``active``, ``progress``, ``record`` (the
  ``RunRecord``), ``config`` / ``summary`` (the raw dicts, read-only views), ``train_config``
  (a ``TrainConfig``, or None when the stored dict is not one), ``label`` (the name), ``marked_label``
  (the name with compact ε caveat marks)
- privacy: ``private``, ``mode`` ('epsilon' / 'sigma' / 'baseline'; None for other job kinds),
  ``target_epsilon``, ``target_delta``, ``epsilon_limit``, ``accountant``, ``noise_multiplier``
  (the σ used, from the summary, else the config), ``max_grad_norm``, ``sample_rate``,
  ``final_epsilon``, ``epsilon_status`` (``dpcore.privacy.caveats.EpsilonStatus``: caveats and the
  proven bound), ``reproducible``, ``privacy_text`` ('target ε 3', 'fixed σ 1.1', 'no DP (ε = ∞)')
- data and training: ``dataset``, ``model``, ``seed``, ``batch_size``, ``epochs`` (planned),
  ``epochs_done``, ``steps``, ``seconds``, ``ms_per_step``, ``parent`` (the run this one continues)
- results: ``test_accuracy``, ``train_accuracy``, ``validation_accuracy``, ``clip_fraction``
  (final fraction of clipped per-sample gradients), ``mia_status``, ``mia_auc``, ``mia_tpr``
  (TPR at 1% FPR), ``mia_advantage``, ``baseline_run`` (linked baseline id)
- ``number(key)``: any summary number (NaN when missing); ``knob(key, default)``: any config value
- ``checks(max_epsilon=10, max_auc=0.6, min_accuracy=0.55, allow_reproducible=False,
  final_epsilon=None)``: the privacy gate's checks (``dpcore.privacy.checks.run_checks``)
- ``roc()``: the attack's ROC ready to plot (``dpcore.store.artifacts.roc_curve``) or None
- ``artifacts``: the run's artifacts folder (None without a store); ``steps_frame()`` /
  ``epochs_frame()``: the metric tables (``RunStore.steps`` / ``RunStore.epochs``)

>>> record = RunRecord(id="r1", name="digits mlp, no DP", kind="train", group=None, status="done",
...                    config={"dataset": "digits", "private": False}, summary={"test_accuracy": 0.9})
>>> run = StoredRun.from_record(record)
>>> (run.mode, run.final_epsilon, run.test_accuracy, run.reproducible, run.roc())
('baseline', inf, 0.9, True, None)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dpcore.config import TrainConfig
from dpcore.store.artifacts import roc_curve
from dpcore.store.runs import RunRecord, RunStore

if TYPE_CHECKING:  # pandas is imported lazily by the store; caveats and checks by the methods that need them
    import pandas as pd

    from dpcore.privacy.caveats import EpsilonStatus
    from dpcore.privacy.checks import Check

RESUME_KEY = "resume_from"  # config.extra key naming the run a continuation started from
_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainConfig))


def _float(value: Any) -> float:
    """``value`` as a float; NaN for None, booleans, text and anything else that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _optional(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a finite-or-infinite number."""
    number = _float(value)
    return None if math.isnan(number) else number


def parent_of(record: RunRecord) -> str | None:
    """Id of the run ``record`` continues (``config['extra']['resume_from']``), or None for a fresh run."""
    extra = record.config.get("extra") or {}
    parent = extra.get(RESUME_KEY) if isinstance(extra, dict) else None
    return str(parent) if parent else None


@dataclass(frozen=True, eq=False)
class StoredRun:
    """A stored run with typed access to its config, summary, caveats, checks, ROC and metrics."""

    record: RunRecord
    store: RunStore | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def load(cls, store: RunStore, run_id: str) -> StoredRun:
        """The run ``run_id`` of ``store`` (RunNotFound for an unknown id)."""
        return cls(store.get(run_id), store)

    @classmethod
    def from_record(cls, record: RunRecord, *, store: RunStore | None = None) -> StoredRun:
        """A view of ``record``; pass its ``store`` for ``roc()``, ``artifacts`` and the metric frames."""
        return cls(record, store)

    @classmethod
    def all(cls, store: RunStore, *, kind: str | None = "train") -> list[StoredRun]:
        """Every stored run of ``kind`` (all kinds for None), in ``RunStore.records`` order."""
        return [cls(record, store) for record in store.records(kind=kind)]

    def __repr__(self) -> str:
        return f"StoredRun({self.id!r}, {self.status!r})"

    # ------------------------------------------------------------------ the record
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def label(self) -> str:
        """The run's display name (its stored name, e.g. 'digits mlp, eps 3, C 1, seed 42')."""
        return self.record.name

    @property
    def marked_label(self) -> str:
        """The name with compact caveat marks for legends: 'digits mlp, eps 3 (GDP approx.)'."""
        return self.epsilon_status.marked_label(self.record.name)

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def group(self) -> str | None:
        return self.record.group

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def stop_status(self) -> str | None:
        return self.record.stop_status

    @property
    def stop_reason(self) -> str | None:
        return self.record.stop_reason

    @property
    def error_message(self) -> str | None:
        return self.record.error_message

    @property
    def created(self) -> str:
        return self.record.created

    @property
    def finished(self) -> str | None:
        return self.record.finished

    @property
    def device(self) -> str | None:
        """The device it trained on: the record's, else the summary's."""
        return self.record.device or self.summary.get("device")

    @property
    def active(self) -> bool:
        return self.record.active

    @property
    def progress(self) -> float | None:
        return self.record.progress

    @property
    def config(self) -> Mapping[str, Any]:
        """The stored config dict (read-only view)."""
        return MappingProxyType(self.record.config)

    @property
    def summary(self) -> Mapping[str, Any]:
        """The stored summary dict (read-only view)."""
        return MappingProxyType(self.record.summary)

    @functools.cached_property
    def train_config(self) -> TrainConfig | None:
        """The config as a ``TrainConfig`` (keys it does not know are dropped), or None when it is not one."""
        values = {key: value for key, value in self.record.config.items() if key in _CONFIG_FIELDS}
        if self.record.kind != "train" and not values:
            return None
        try:
            return TrainConfig(**values)
        except Exception:  # an old or foreign config: the typed properties below still answer
            return None

    def knob(self, key: str, default: Any = None) -> Any:
        """The config's value for ``key`` (``default`` when absent)."""
        return self.record.config.get(key, default)

    def number(self, key: str) -> float:
        """The summary's number ``key`` as a float (NaN when missing or not a number)."""
        return _float(self.record.summary.get(key))

    # ------------------------------------------------------------------ privacy
    @property
    def private(self) -> bool:
        """Whether the run used DP-SGD (a stored config without the key is private)."""
        return bool(self.record.config.get("private", True))

    @property
    def mode(self) -> str | None:
        """'epsilon' (σ calibrated to a target ε), 'sigma' (fixed σ) or 'baseline' (no DP); None for non-train jobs."""
        if self.record.kind != "train":
            return None
        if not self.private:
            return "baseline"
        config = self.record.config
        fixed = config.get("noise_multiplier") is not None and config.get("target_epsilon") is None
        return "sigma" if fixed else "epsilon"

    @property
    def target_epsilon(self) -> float | None:
        """The ε the noise was calibrated to; None for a fixed-σ run or a baseline."""
        return _optional(self.record.config.get("target_epsilon")) if self.private else None

    @property
    def target_delta(self) -> float | None:
        """The δ of every ε of this run; None for a baseline."""
        value = self.record.config.get("target_delta", self.record.summary.get("target_delta"))
        return _optional(value) if self.private else None

    @property
    def epsilon_limit(self) -> float | None:
        """The hard stop on ε; None when unset or for a baseline."""
        return _optional(self.record.config.get("epsilon_limit")) if self.private else None

    @property
    def accountant(self) -> str | None:
        """The accountant that reported the ε ('rdp', 'prv', 'gdp'); None for a baseline."""
        if not self.private:
            return None
        return self.record.summary.get("accountant") or self.record.config.get("accountant") or "rdp"

    @property
    def noise_multiplier(self) -> float | None:
        """The σ used (the summary's, else the config's); None for a baseline or when unknown."""
        if not self.private:
            return None
        return _optional(self.record.summary.get("noise_multiplier", self.record.config.get("noise_multiplier")))

    @property
    def max_grad_norm(self) -> float | None:
        """The clipping bound C; None for a baseline (which does not clip) or when unset."""
        return _optional(self.record.config.get("max_grad_norm")) if self.private else None

    @property
    def sample_rate(self) -> float:
        """Poisson sampling rate q = batch size / dataset size (NaN when not stored)."""
        return self.number("sample_rate")

    @property
    def final_epsilon(self) -> float:
        """ε spent as the run's accountant reported it; inf for a baseline, NaN when unknown."""
        return self.number("final_epsilon") if self.private else math.inf

    @functools.cached_property
    def epsilon_status(self) -> EpsilonStatus:
        """The ε, its caveats (GDP, no Poisson, reproducible) and the proven bound of the same schedule."""
        from dpcore.privacy.caveats import epsilon_status  # deferred: privacy.accounting loads opacus and torch

        return epsilon_status(config=self.record.config, summary=self.record.summary)

    @property
    def reproducible(self) -> bool:
        """Whether the noise followed the seed (a stored config without the key: yes, a run from before)."""
        from dpcore.privacy.caveats import is_reproducible  # deferred: privacy.accounting loads opacus and torch

        return is_reproducible(self.record.config)

    @property
    def privacy_text(self) -> str:
        """How the run was made private: 'target ε 3', 'fixed σ 1.1' or 'no DP (ε = ∞)'."""
        if not self.private:
            return "no DP (ε = ∞)"
        if self.target_epsilon is not None:
            return f"target ε {self.target_epsilon:g}"
        sigma = self.noise_multiplier
        return f"fixed σ {sigma:g}" if sigma is not None else "fixed σ"

    # ------------------------------------------------------------------ data and training
    @property
    def dataset(self) -> str | None:
        return self.record.config.get("dataset")

    @property
    def model(self) -> str | None:
        return self.record.config.get("model")

    @property
    def seed(self) -> int | None:
        return self.record.config.get("seed")

    @property
    def batch_size(self) -> float | None:
        """The expected batch size (config), None when unset."""
        return _optional(self.record.config.get("batch_size"))

    @property
    def epochs(self) -> float | None:
        """Planned epochs (config), None when unset (the dataset's recipe decides)."""
        return _optional(self.record.config.get("epochs"))

    @property
    def epochs_done(self) -> float:
        """Epochs completed (NaN when not stored)."""
        return self.number("epochs_done")

    @property
    def steps(self) -> int:
        """Optimizer steps taken (the summary's, else the progress counter)."""
        value = _float(self.record.summary.get("steps"))
        return int(value) if math.isfinite(value) else int(self.record.steps_done)

    @property
    def seconds(self) -> float:
        """Training wall-clock time in seconds (NaN when not stored)."""
        return self.number("seconds")

    @property
    def ms_per_step(self) -> float:
        """Milliseconds per optimizer step (NaN when not stored)."""
        return self.number("ms_per_step")

    @property
    def parent(self) -> str | None:
        """Id of the run this one continues from its checkpoint, or None."""
        return parent_of(self.record)

    # ------------------------------------------------------------------ results
    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch, a fraction (NaN when unknown)."""
        return self.number("test_accuracy")

    @property
    def train_accuracy(self) -> float:
        """Training accuracy after the last epoch, a fraction (NaN when unknown)."""
        return self.number("train_accuracy")

    @property
    def validation_accuracy(self) -> float:
        """Validation accuracy after the last epoch, a fraction (NaN when unknown or no validation split)."""
        return self.number("validation_accuracy")

    @property
    def clip_fraction(self) -> float:
        """Fraction of per-sample gradients clipped in the last step (NaN for a baseline or when unknown)."""
        return self.number("final_clip_fraction") if self.private else math.nan

    @property
    def mia_status(self) -> str | None:
        """The loss-threshold attack: 'pending', 'done', 'failed', 'skipped' or None (never started)."""
        return self.record.summary.get("mia_status")

    @property
    def mia_auc(self) -> float:
        """The loss-threshold attack's AUC (0.5 = chance; NaN when not measured)."""
        return self.number("mia_auc")

    @property
    def mia_tpr(self) -> float:
        """The loss-threshold attack's true-positive rate at 1% false positives (NaN when not measured)."""
        return self.number("mia_tpr_at_1pct_fpr")

    @property
    def mia_advantage(self) -> float:
        """The attack's advantage, max(TPR - FPR) (NaN when not measured)."""
        return self.number("mia_advantage")

    @property
    def baseline_run(self) -> str | None:
        """Id of the non-private run linked to this one, or None."""
        return self.record.summary.get("baseline_run")

    @property
    def baseline_for(self) -> str | None:
        """Id of the private run this non-private run was queued as the baseline of, or None."""
        value = self.record.summary.get("baseline_for")
        return value if isinstance(value, str) and value else None

    def checks(self, *, max_epsilon: float = 10.0, max_auc: float = 0.60, min_accuracy: float = 0.55,
               allow_reproducible: bool = False, final_epsilon: float | None = None) -> list[Check]:
        """The privacy gate's checks (``dpcore.privacy.checks.run_checks``) for this run.

        ``final_epsilon`` overrides the stored ε (e.g. the latest ε of an active run).
        """
        from dpcore.privacy.checks import run_checks  # deferred: privacy.accounting loads opacus and torch

        return run_checks(self.record.config, self.record.summary, max_epsilon=max_epsilon, max_auc=max_auc,
                          min_accuracy=min_accuracy, allow_reproducible=allow_reproducible,
                          final_epsilon=final_epsilon)

    # ------------------------------------------------------------------ files and metrics
    @property
    def artifacts(self) -> Path | None:
        """The run's artifacts folder (may not exist yet); None without a store."""
        return None if self.store is None else self.store.artifacts_path(self.id)

    def roc(self) -> dict[str, Any] | None:
        """The attack's ROC ready to plot (``fpr``/``tpr`` arrays, ``auc``), or None when there is none."""
        return roc_curve(self.artifacts)

    def steps_frame(self) -> pd.DataFrame:
        """Per-step metrics (``RunStore.steps``); needs a store."""
        return self._store().steps(self.id)

    def epochs_frame(self) -> pd.DataFrame:
        """Per-epoch metrics (``RunStore.epochs``); needs a store."""
        return self._store().epochs(self.id)

    def _store(self) -> RunStore:
        if self.store is None:
            raise ValueError(f"run {self.id} was built without its store; use StoredRun.load(store, run_id)")
        return self.store


__all__ = ["RESUME_KEY", "StoredRun", "parent_of"]
