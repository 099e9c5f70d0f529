"""The Train page's form without Streamlit: its settings, their TrainConfig, and the texts it shows.

A *settings* dict holds every value of the form (``default_settings``): the TrainConfig knobs plus
the form's own ``mode`` ('epsilon', 'sigma' or 'baseline'), ``csv_name``, ``with_baseline`` and
``feature_choice`` (the feature columns ticked; None until a CSV's columns are known).
``config_from`` and ``settings_from`` convert both ways; the page only draws widgets bound to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpcore.config import TrainConfig
from dpcore.privacy import accounting
from dpcore.views.explain import explain
from dpcore.views.help import FIELD_HELP

DEFAULT_DATASET = "synthetic"
DEFAULT_EPSILON = 3.0
CONFIG_FIELDS = frozenset(TrainConfig.__dataclass_fields__)
PROBE_FIELDS = ("dataset", "data_path", "label_column", "feature_columns", "model", "batch_size", "lr", "optimizer",
                "seed")
PROBE_STEPS = 30  # at most; fewer with large batches (about PROBE_SAMPLES norms are plenty for a quantile)
PROBE_SAMPLES = 4096
MODES = {"epsilon": "Target ε", "sigma": "Noise σ", "baseline": "No DP"}
STATUS_TEXT = {
    "offline": ":green[:material/check_circle:] built in, works offline",
    "cached": ":green[:material/download_done:] downloaded, in the local cache",
    "download": ":orange[:material/cloud_download:] not downloaded yet: needs internet once",
}
LABEL_HINTS = ("label", "target", "class", "y", "outcome")
_SETTING_FIELDS = ("model", "target_delta", "max_grad_norm", "epochs", "batch_size", "physical_batch_size", "lr",
                   "optimizer", "momentum", "accountant", "grad_sample_mode", "poisson_sampling", "seed",
                   "reproducible", "device", "nproc", "epsilon_limit", "data_path", "label_column", "feature_columns")


def _plain(key: str) -> str:
    return explain(key).replace("**", "")


#: Tooltip of each widget of the form, by setting name (and a few buttons).
HELP: dict[str, str] = {
    "dataset": FIELD_HELP["dataset"].split(" (")[0].capitalize()
    + ". Changing it resets the model and training knobs to that dataset's tuned recipe.",
    "csv_file": "A header row, then one example per row. Numeric columns are standardised, text columns one-hot "
                "encoded. The file is kept in the runs folder while a run uses it; a file no run uses is removed "
                "after a day, a rejected one at once.",
    "label_column": FIELD_HELP["label_column"].capitalize() + ": what the model predicts.",
    "feature_columns": "The columns the model reads (all but the label by default). Leave out IDs, free text and "
                       "columns that give the answer away.",
    "mode": "**Target ε**: the noise is calibrated so training spends exactly this budget. **Noise σ**: you set the "
            "noise; ε follows. **No DP**: the non-private baseline, no clipping and no noise.",
    "target_epsilon": FIELD_HELP["target_epsilon"].capitalize() + ". Below 1 is strong, 1-5 moderate, 5-10 weak, "
                      "above 10 very weak privacy.",
    "probe": f"Trains up to {PROBE_STEPS} short steps without noise or clipping, measures every per-sample gradient "
             "norm and proposes a C that clips about 65 % of them. The probe looks at the training data without "
             "privacy.",
    "epochs": FIELD_HELP["epochs"].capitalize() + ". More epochs spend more ε at the same σ (with a target ε, more "
              "epochs mean more noise per step).",
    "lr": "Step size of the optimizer. DP-SGD usually wants a larger rate with SGD (0.05-0.5) and about 1e-3 with "
          "Adam.",
    "batch_size": FIELD_HELP["batch_size"].capitalize() + ": with Poisson sampling each example joins a batch with "
                  "probability batch/N. Larger batches average the noise away at the same ε.",
    "optimizer": FIELD_HELP["optimizer"].capitalize() + " (momentum under Advanced).",
    "epsilon_limit": " Leave empty for no limit.",  # appended to explain('epsilon_limit') by ``help_for``
    "physical_batch_size": FIELD_HELP["physical_batch_size"].capitalize() + ": the same logical steps and the same "
                           "ε, computed in smaller pieces to save memory. Leave empty to process whole batches.",
    "seed": "Fixes the model's initial weights (also used for the baseline); the member/non-member split is fixed "
            "whatever the seed. The DP noise and the batch sampling do not follow it: they come from fresh "
            "operating-system entropy, used once and never stored, so nobody can replay them - unless "
            "'Reproducible' is ticked.",
    "reproducible": "Noise and batch sampling follow the seed, so the same settings train the same model bit for "
                    "bit (for tests and teaching). Such a run is NOT private against anyone who knows the seed: "
                    "they can retrain it with and without a record and compare. Leave it off for any model you "
                    "release.",
    "grad_sample_mode": "How per-sample gradients are clipped. auto: book-keeping clipping (one backward pass, "
                        "fastest) when every layer is Linear, Conv2d, GroupNorm or LayerNorm, else Opacus' ghost "
                        "clipping unless the model shares parameters; hooks: classic per-sample gradients; "
                        "functorch: vmap-based.",
    "device": "Where training runs. auto picks CUDA, then Apple MPS, then the CPU; here: ",
    "momentum": FIELD_HELP["momentum"] + " (SGD only).",
    "poisson_sampling": FIELD_HELP["poisson_sampling"].capitalize() + ". Without it the ε reported is not a proven "
                        "bound for the batches actually drawn.",
    "with_baseline": "Queued after this run (or reused when an identical one finished before). Its accuracy is drawn "
                     "on the accuracy chart and gives the accuracy cost of privacy.",
    "train": "Queue this run; it trains in the background and you can keep exploring.",
    "nproc": "Train this one model in several processes, one per GPU, with Opacus' DPDDP under torchrun. Each "
             "process samples its share of the data at the global rate and only the first adds the noise, so "
             "ε, σ and the noise are those of one process; the steps run faster. The baseline trains in one "
             "process.",
}
for _field, _key in (("noise_multiplier", "noise_multiplier"), ("target_delta", "delta"),
                     ("max_grad_norm", "max_grad_norm"), ("accountant", "accountants")):
    HELP[_field] = _plain(_key)
HELP["epsilon_limit"] = _plain("epsilon_limit") + HELP["epsilon_limit"]

NO_RUN_TEXT = ("Press **Train**: progress, ε spent, clipped gradients, loss and accuracy appear here while it "
               "trains; then the membership attack's ROC curve, the five checks and what the numbers mean. Past "
               "runs are on the **Runs** page.")


# ---------------------------------------------------------------------- settings <-> config
def recipe_settings(dataset: str) -> dict[str, Any]:
    """The knobs a dataset's recipe sets (``TrainConfig(dataset=...).resolve()``), as form settings."""
    cfg = TrainConfig(dataset=dataset, target_epsilon=DEFAULT_EPSILON).resolve()
    return {"model": cfg.model, "max_grad_norm": float(cfg.max_grad_norm), "epochs": int(cfg.epochs),
            "batch_size": int(cfg.batch_size), "lr": float(cfg.lr), "optimizer": cfg.optimizer,
            "physical_batch_size": None}


def default_settings(dataset: str = DEFAULT_DATASET) -> dict[str, Any]:
    """Every setting of the form for ``dataset``: its recipe plus the TrainConfig defaults."""
    base = TrainConfig(dataset=dataset)
    return {"dataset": dataset, "mode": "epsilon", "target_epsilon": DEFAULT_EPSILON, "noise_multiplier": 1.0,
            "target_delta": float(base.target_delta), "momentum": float(base.momentum),
            "accountant": base.accountant, "seed": int(base.seed), "epsilon_limit": None,
            "grad_sample_mode": base.grad_sample_mode, "device": base.device, "nproc": base.nproc,
            "poisson_sampling": base.poisson_sampling, "reproducible": base.reproducible,
            "data_path": None, "csv_name": None, "label_column": None, "feature_columns": None,
            "feature_choice": None,
            "with_baseline": True, **recipe_settings(dataset)}


def settings_from(cfg: TrainConfig) -> dict[str, Any]:
    """Form settings describing ``cfg`` (the inverse of ``config_from``); other knobs keep their defaults."""
    cfg = cfg.resolve()
    settings = default_settings(cfg.dataset)
    settings.update({field: getattr(cfg, field) for field in _SETTING_FIELDS})
    settings["mode"] = cfg.mode
    if cfg.target_epsilon is not None:
        settings["target_epsilon"] = float(cfg.target_epsilon)
    if cfg.noise_multiplier is not None:
        settings["noise_multiplier"] = float(cfg.noise_multiplier)
    if cfg.data_path:
        settings["csv_name"] = cfg.data_path.rsplit("/", 1)[-1]
    settings["feature_choice"] = _listed(cfg.feature_columns)  # the multiselect's ticks (None: all)
    for field in ("max_grad_norm", "lr", "target_delta", "momentum"):
        settings[field] = float(settings[field])
    return settings


def config_from(settings: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig the form describes (not validated)."""
    mode = settings["mode"]
    csv = settings["dataset"] == "csv"
    return TrainConfig(
        dataset=settings["dataset"], model=settings["model"], private=mode != "baseline",
        target_epsilon=settings["target_epsilon"] if mode == "epsilon" else None,
        noise_multiplier=settings["noise_multiplier"] if mode == "sigma" else None,
        target_delta=settings["target_delta"], max_grad_norm=settings["max_grad_norm"], epochs=settings["epochs"],
        batch_size=settings["batch_size"], physical_batch_size=settings["physical_batch_size"], lr=settings["lr"],
        optimizer=settings["optimizer"], momentum=settings["momentum"], accountant=settings["accountant"],
        grad_sample_mode=settings["grad_sample_mode"], poisson_sampling=settings["poisson_sampling"],
        seed=settings["seed"], reproducible=bool(settings.get("reproducible", False)), device=settings["device"],
        nproc=int(settings.get("nproc", 1)) if mode != "baseline" else 1,
        epsilon_limit=settings["epsilon_limit"] if mode != "baseline" else None,
        data_path=settings["data_path"] if csv else None, label_column=settings["label_column"] if csv else None,
        feature_columns=_listed(settings.get("feature_columns")) if csv else None)


def nproc_options(gpus: int) -> list[int]:
    """The "processes / GPUs" choices with ``gpus`` CUDA GPUs visible: 1 to ``gpus``; none (the widget is
    hidden) with fewer than two."""
    return list(range(1, gpus + 1)) if gpus > 1 else []


def _listed(columns: Sequence[str] | None) -> list[str] | None:
    return list(columns) if columns is not None else None


def handoff_config(current: Mapping[str, Any], given: Mapping[str, Any]) -> TrainConfig:
    """The config the Budget planner's "Use these settings" asks for, on top of the form ``current``.

    Only TrainConfig fields of ``given`` are used; a new dataset starts from its recipe (not the old
    knobs), and a given ε or σ switches the privacy mode to it. Raises TypeError/DPExplorerError.
    """
    given = {key: value for key, value in given.items() if key in CONFIG_FIELDS}
    cfg = config_from(current)
    if given.get("dataset", cfg.dataset) != cfg.dataset:
        cfg = TrainConfig(dataset=given["dataset"])
    if "target_epsilon" in given:
        cfg = cfg.replace(noise_multiplier=None, private=True)
    elif "noise_multiplier" in given:
        cfg = cfg.replace(target_epsilon=None, private=True)
    return cfg.replace(**given)


def model_for(settings: Mapping[str, Any], options: Sequence[str]) -> str:
    """The model to show: the current one if ``options`` has it, else the dataset's recipe model, else the first."""
    if settings["model"] in options:
        return settings["model"]
    recipe = recipe_settings(settings["dataset"])["model"]
    return recipe if recipe in options else options[0]


# ---------------------------------------------------------------------- data
def label_column_for(columns: Sequence[str], current: str | None) -> str:
    """``current`` if it is a column, else the first column named like a label, else the last column."""
    if current in columns:
        return current
    hinted = [column for column in columns if column.strip().lower() in LABEL_HINTS]
    return hinted[0] if hinted else columns[-1]


def feature_columns_for(columns: Sequence[str], label: str, current: Sequence[str] | None) -> list[str]:
    """The feature columns to show ticked: ``current`` (those still in the CSV, label excluded), else all but
    ``label``."""
    others = [column for column in columns if column != label]
    kept = [column for column in others if current is not None and column in current]
    return kept or others


def chosen_features(columns: Sequence[str], label: str, chosen: Sequence[str]) -> list[str] | None:
    """The config's ``feature_columns`` for the ticked ``chosen``: None when they are all the columns but the
    label (the default, kept out of links), else their list in file order."""
    others = [column for column in columns if column != label]
    picked = [column for column in others if column in chosen]
    return None if picked == others else picked


def fitted_batch(n: int, batch_size: int) -> int | None:
    """A power-of-two batch for ``n`` training examples when ``batch_size`` exceeds them; None when it fits."""
    if batch_size <= n:
        return None
    return 2 ** max(0, math.floor(math.log2(max(1, n // 2))))


def size_text(info: Any) -> str:
    """'**N** training examples (members) · ...' for a dataset's ``DatasetInfo``."""
    return (f"**{info.n_members:,}** training examples (members) · **{info.n_non_members:,}** held out · "
            f"{info.num_classes} classes · input {' × '.join(str(d) for d in info.input_shape)}")


def download_text(title: str, n_examples: int) -> str:
    """Why a dataset cannot be used yet, and what to do."""
    return (f"**{title}** is not in the local cache yet. Download it once (about {n_examples:,} rows from OpenML; "
            "needs internet), or pick a built-in dataset.")


# ---------------------------------------------------------------------- gradient-norm probe
def probe_steps(batch_size: int | None) -> int:
    """Probe steps for a batch size: up to PROBE_STEPS, fewer for big batches (a few thousand norms suffice)."""
    return max(3, min(PROBE_STEPS, PROBE_SAMPLES // max(1, int(batch_size or 1))))


def probe_signature(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a probe depends on: a probe taken with another signature no longer applies."""
    return tuple(settings.get(field) for field in PROBE_FIELDS)


def probe_text(norms: Sequence[float], *, suggested: float, current: float | None, steps: int) -> str:
    """What the probe measured and how the suggested and the current C clip (markdown)."""
    values = np.asarray(norms, dtype=float)
    clipped_now = float(np.mean(values > current)) if current else 1.0
    return (f"It clips about **{float(np.mean(values > suggested)):.0%}** of the {len(values):,} per-sample "
            f"gradients measured over {steps} steps (median norm {float(np.median(values)):.3g}). Your current "
            f"C = {current:g} clips {clipped_now:.0%}.")


# ---------------------------------------------------------------------- privacy plan
@dataclass(frozen=True)
class PrivacyPlan:
    """What the trainer will do for a config: noise multiplier σ, ε after all epochs, steps and sample rate q."""

    sigma: float
    epsilon: float
    steps: int
    sample_rate: float


def privacy_plan(*, mode: str, target_epsilon: float | None, noise_multiplier: float | None, delta: float,
                 n: int, batch_size: int, epochs: int, accountant: str) -> PrivacyPlan:
    """σ, ε after all epochs, steps and sample rate the trainer will use (the trainer's q = 1 / ceil(n / batch))."""
    sampling = accounting.sampling_for(n=n, batch_size=batch_size)
    sample_rate, steps = sampling.sample_rate, sampling.steps(epochs)
    if mode == "epsilon":
        sigma = accounting.noise_for_epsilon(target_epsilon=target_epsilon, delta=delta, sample_rate=sample_rate,
                                             steps=steps, accountant=accountant)
    else:
        sigma = float(noise_multiplier)
    epsilon = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta,
                                     accountant=accountant)
    return PrivacyPlan(sigma=sigma, epsilon=epsilon, steps=steps, sample_rate=sample_rate)


def plan_text(cfg: TrainConfig, plan: PrivacyPlan) -> str:
    """One markdown sentence: the σ, the steps and the ε they spend (and where the hard limit stops)."""
    what = (f"σ = **{plan.sigma:.3f}** is calibrated so that" if cfg.mode == "epsilon"
            else f"With σ = **{plan.sigma:.3f}**,")
    limit = cfg.epsilon_limit
    return (f":material/calculate: {what} {plan.steps:,} steps (sampling rate {plan.sample_rate:.2%} per step) "
            f"spend ε = **{plan.epsilon:.2f}** at δ = {cfg.target_delta:g} ({cfg.accountant.upper()})"
            + (f"; the hard limit stops training at ε = {limit:g}." if limit is not None and limit < plan.epsilon
               else "."))


__all__ = ["CONFIG_FIELDS", "DEFAULT_DATASET", "HELP", "MODES", "PrivacyPlan", "chosen_features", "config_from",
           "default_settings", "feature_columns_for", "fitted_batch", "handoff_config", "label_column_for",
           "model_for", "plan_text", "privacy_plan", "probe_signature", "probe_steps", "probe_text",
           "recipe_settings", "settings_from", "size_text"]
