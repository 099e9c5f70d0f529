"""The budget planner's settings, texts and decisions (no Streamlit): what ``pages/planner.py`` draws.

A plan is a plain dict of settings (see ``DEFAULTS``; ``PARSERS``, ``BOUNDS`` and ``CHOICES`` validate URL values,
``fit_dataset`` reconciles them, ``url_params`` writes a plan back); the rest turns a plan into the numbers and
sentences the page shows.
Epsilons are (ε, δ) values in nats; sample rates are probabilities; sizes count examples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from dpcore.config import TrainConfig, recipe_for
from dpcore.errors import DPExplorerError
from dpcore.privacy import accounting
from dpcore.privacy.accounting import Sampling
from dpcore.privacy.bands import format_big, format_significant
from dpcore.privacy.guidance import guidance
from dpcore.views.explain import explain

CUSTOM = "custom"
CURVE_SIGMAS = (0.5, 0.8, 1.0, 1.5, 2.0, 4.0, 8.0)
CURVE_CAP = (2.5, 12.0)  # curves ending above max(2.5 x the larger of target and your epsilon, 12) are left out
TARGET_RANGE = (0.5, 16.0)
DEFAULTS: dict[str, Any] = {  # the digits recipe's batch and epochs, and a sigma that lands near epsilon 3
    "dataset": "digits", "n": 1437, "size_by": "batch", "batch_size": recipe_for("digits")["batch_size"],
    "sample_rate": 0.01, "epochs": recipe_for("digits")["epochs"], "target_delta": 1e-5, "noise_multiplier": 2.7,
    "target_epsilon": 3.0, "handoff_mode": "noise_multiplier",
}
#: setting -> parser of its URL text; the URL uses TrainConfig's field names where they exist
PARSERS: dict[str, Callable[[str], Any]] = {
    "dataset": str, "n": int, "size_by": str, "batch_size": int, "sample_rate": float, "epochs": int,
    "target_delta": float, "noise_multiplier": float, "target_epsilon": float, "handoff_mode": str,
}
URL_NAMES = {"handoff_mode": "handoff"}  # setting -> its URL parameter, where the names differ
#: numeric settings -> (min, max) of their widgets; URL values outside are ignored (a widget would refuse them)
BOUNDS: dict[str, tuple[float, float | None]] = {
    "n": (1, 10**9), "batch_size": (1, None), "sample_rate": (1e-7, 1.0), "epochs": (1, 1000),
    "target_delta": (1e-12, 0.5), "noise_multiplier": (0.05, 1000.0), "target_epsilon": (0.01, 1000.0),
}
CHOICES = {"size_by": ("batch", "sample_rate"), "handoff_mode": ("noise_multiplier", "target_epsilon")}
SIZE_BY_LABELS = {"batch": "batch size B", "sample_rate": "sample rate q"}
HELP = {
    "dataset": "Fills N with the number of training examples (members) the dataset gives the trainer: its fixed "
               "member split. Pick 'Custom N' to type any size.",
    "bound": "Proven by this schedule's privacy accounting (PRV privacy profile): no attack, known or future, can "
             "find more members at a 1 % false-positive rate. Chance is 1 %.",
    "sigma_needed": "Smallest noise multiplier whose RDP ε after all the steps stays at or below the target "
                    "(rounded up). Training with a target ε calibrates the same σ.",
    "use": "Stores the dataset, batch size, epochs, δ and the privacy budget for the Train page.",
}
#: numeric setting -> its number input's label, step, format and help (min and max are ``BOUNDS``)
NUMBER_INPUTS: dict[str, dict[str, Any]] = {
    "n": {"label": "Dataset size N (training examples)", "step": 100,
          "help": "Number of training examples. Only the sample rate derived from it and the batch size enters ε; "
                  "δ should be well below 1/N."},
    "epochs": {"label": "Epochs", "step": 1, "help": "Passes over the data; each is ⌈N/B⌉ noisy steps."},
    "target_delta": {"label": "δ (delta)", "step": 1e-6, "format": "%.1e", "help": explain("delta")},
    "batch_size": {"label": "Batch size B (examples)", "step": 16,
                   "help": "Expected examples per batch. The trainer samples each example with probability "
                           "q = 1/⌈N/B⌉ (Poisson sampling)."},
    "sample_rate": {"label": "Sample rate q", "step": 0.001, "format": "%.5f",
                    "help": "Chance that an example joins a batch. Training turns it into a batch size B = round(q·N) "
                            "and then uses q = 1/⌈N/B⌉, shown below."},
    "noise_multiplier": {"label": "Noise multiplier σ", "step": 0.05, "format": "%.2f",
                         "help": explain("noise_multiplier")},
    "target_epsilon": {"label": "Target ε", "step": 0.5, "format": "%.2f",
                       "help": "For the 'noise needed' answer and the dashed line on the epochs chart. "
                               + explain("epsilon")},
}
INTRO = ("What would a run cost in privacy? Instant answers from the accountants, no training: ε for your settings, "
         "how it grows epoch by epoch, and the noise needed for a target ε. Training uses the same sampling and "
         "accountants, so a run with these settings reports the same ε.")


# ---------------------------------------------------------------------- maths, cached on the inputs (all floats)
@functools.lru_cache(maxsize=1024)
def accountant_epsilon(*, accountant: str, sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` Poisson-sampled steps at noise multiplier ``sigma``, by ``accountant``, at ``delta``.

    DPExplorerError where the accountant has no answer (GDP or PRV for a tiny σ or a large δ).
    """
    if accountant == "rdp":  # the same number as epsilon_for(accountant="rdp"), reusing cached orders
        return accounting.rdp_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)
    return accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta,
                                  accountant=accountant)


@functools.lru_cache(maxsize=1024)
def epsilon_curve(*, sigma: float, n: int, batch_size: int, epochs: int, delta: float) -> pd.DataFrame:
    """RDP ε after every epoch at ``sigma`` (``accounting.rdp_epsilon_by_epoch``); do not modify the frame."""
    sampling = accounting.sampling_for(n=n, batch_size=batch_size)
    return accounting.rdp_epsilon_by_epoch(noise_multipliers=[sigma], sampling=sampling, epochs=epochs, delta=delta)


@functools.lru_cache(maxsize=1024)
def sigma_for(*, target: float, sample_rate: float, steps: int, delta: float) -> float:
    """The smallest σ whose RDP ε after ``steps`` stays at or below ``target`` (DPExplorerError when none)."""
    return accounting.rdp_noise_for_epsilon(target_epsilon=target, delta=delta, sample_rate=sample_rate, steps=steps)


@functools.lru_cache(maxsize=256)
def sigma_table(*, sample_rate: float, steps: int, delta: float) -> pd.DataFrame:
    """σ needed for each target ε in ``TARGET_RANGE`` (``accounting.sigma_curve``); do not modify the frame."""
    return accounting.sigma_curve(sample_rate=sample_rate, steps=steps, delta=delta, epsilon_range=TARGET_RANGE)


def epsilon_or_problem(*, accountant: str, sigma: float, sample_rate: float, steps: int,
                       delta: float) -> tuple[float, str | None]:
    """``(ε, None)``, or ``(nan, why)`` for an accountant without an answer (GDP, PRV: tiny σ or large δ)."""
    try:
        return accountant_epsilon(accountant=accountant, sigma=sigma, sample_rate=sample_rate, steps=steps,
                                  delta=delta), None
    except DPExplorerError:
        return math.nan, f"{accountant.upper()} has no answer for this schedule (σ too small or δ too large)"


def sigma_needed(*, target: float, sample_rate: float, steps: int, delta: float) -> tuple[float, float]:
    """The σ needed to end at ``target`` ε (RDP, rounded up as ``sigma_text`` shows it) and the ε that rounded σ
    reaches; DPExplorerError when no σ does."""
    sigma = float(sigma_text(sigma_for(target=target, sample_rate=sample_rate, steps=steps, delta=delta)))
    return sigma, accountant_epsilon(accountant="rdp", sigma=sigma, sample_rate=sample_rate, steps=steps, delta=delta)


def epoch_curves(settings: Mapping[str, Any], sampling: Sampling, *, epsilon: float) -> tuple[pd.DataFrame, str]:
    """RDP ε after every epoch for ``curve_sigmas`` (those ending far above the range left out), and its caption."""
    sigma, delta = float(settings["noise_multiplier"]), float(settings["target_delta"])
    curves = {s: epsilon_curve(sigma=s, n=sampling.n, batch_size=sampling.batch_size, epochs=int(settings["epochs"]),
                               delta=delta) for s in curve_sigmas(sigma)}
    left_out, cap = curves_left_out(curves, sigma=sigma, target_epsilon=float(settings["target_epsilon"]),
                                    epsilon=epsilon)
    shown = pd.concat([curve for s, curve in curves.items() if s not in left_out], ignore_index=True)
    return shown, epochs_caption(sampling, sigma=sigma, left_out=left_out, cap=cap)


# ---------------------------------------------------------------------- texts and decisions
def epsilon_text(eps: float) -> str:
    """Epsilon for display: 3 significant digits like the chart labels, whole numbers from 1000 up, powers of
    ten from 10⁴ up ('1.2 × 10⁶', so a card never cuts it off); "n/a" never."""
    if isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 1000:
        return format_big(eps, compact_from=1e4)
    return format_significant(eps)


def sigma_text(sigma: float) -> str:
    """A noise multiplier rounded *up* to 3 decimals, so the value shown still meets the target."""
    return f"{math.ceil(sigma * 1000 - 1e-9) / 1000:.3f}"


def fit_dataset(settings: dict[str, Any], *, member_counts: Mapping[str, int], n_given: bool) -> list[str]:
    """Make a plan read from a URL consistent: returns the ``name=value`` texts it had to ignore.

    An unknown dataset becomes ``custom``; a named dataset without a given ``n`` (``n_given`` False)
    gets its member count, and one whose ``n`` differs becomes ``custom``. Edits ``settings`` in place.
    """
    ignored = []
    if settings["dataset"] != CUSTOM and settings["dataset"] not in member_counts:
        ignored.append(f"dataset={settings['dataset']}")
        settings["dataset"] = CUSTOM
    if settings["dataset"] != CUSTOM:
        if not n_given:
            settings["n"] = member_counts[settings["dataset"]]
        elif settings["n"] != member_counts[settings["dataset"]]:
            settings["dataset"] = CUSTOM  # an N of its own: say so rather than show a dataset it does not match
    return ignored


def refused_text(field: str, value: float | None, *, kept: float) -> str | None:
    """Why ``value`` is refused for the numeric setting ``field`` (outside ``BOUNDS``, or not a finite number),
    naming the allowed range and the value ``kept`` instead (markdown); None when ``value`` is allowed."""
    low, high = BOUNDS[field]
    allowed = f"at least {low:g}" if high is None else f"between {low:g} and {high:g}"
    if value is not None and math.isfinite(value) and value >= low and (high is None or value <= high):
        return None
    given = "nothing" if value is None else f"{value:g}"
    return (f"**{NUMBER_INPUTS[field]['label']}** must be {allowed}; {given} was entered. "
            f"The plan keeps {kept:g} until you enter an allowed value.")


def url_params(settings: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters that reopen this plan (the unused one of batch size and sample rate left out)."""
    unused = "sample_rate" if settings["size_by"] == "batch" else "batch_size"
    return {URL_NAMES.get(name, name): str(settings[name]) for name in PARSERS if name != unused}


def sampling_of(settings: Mapping[str, Any]) -> Sampling:
    """The trainer's sampling for the plan; ConfigError for impossible ones (a batch larger than N)."""
    if settings["size_by"] == "batch":
        return accounting.sampling_for(n=int(settings["n"]), batch_size=int(settings["batch_size"]))
    return accounting.sampling_for(n=int(settings["n"]), sample_rate=float(settings["sample_rate"]))


def sampling_caption(sampling: Sampling, settings: Mapping[str, Any]) -> str:
    """One sentence: the sample rate, steps and batch size training will use for this plan."""
    steps = sampling.steps(settings["epochs"])
    parts = [f"q = 1/{sampling.steps_per_epoch:,} = {sampling.sample_rate:.4g}",
             f"{sampling.steps_per_epoch:,} steps per epoch", f"{steps:,} steps in all",
             f"≈ {sampling.expected_batch_size:,.1f} examples per batch on average"]
    if settings["size_by"] == "sample_rate":
        parts.insert(0, f"batch size B = {sampling.batch_size:,}")
    return ("Training will use: " + " · ".join(parts) + ". (Poisson sampling: each example joins each step with "
            "probability q.)")


def guidance_notes(settings: Mapping[str, Any], sampling: Sampling) -> list[tuple[str, str]]:
    """``privacy.guidance``'s advice about δ and the batch size for this plan: ``(level, message)`` pairs."""
    dataset = settings["dataset"] if settings["dataset"] != CUSTOM else "csv"
    cfg = TrainConfig(dataset=dataset, noise_multiplier=float(settings["noise_multiplier"]),
                      target_delta=float(settings["target_delta"]), batch_size=sampling.batch_size,
                      epochs=int(settings["epochs"]))
    return [(note.level, note.message) for note in guidance(cfg, sampling.n)
            if note.field in ("target_delta", "batch_size")]


def curve_sigmas(sigma: float) -> list[float]:
    """The noise multipliers drawn on the epochs chart: the fixed set and the plan's own, ascending."""
    return sorted({*CURVE_SIGMAS, sigma})


def curves_left_out(curves: Mapping[float, pd.DataFrame], *, sigma: float, target_epsilon: float,
                    epsilon: float) -> tuple[list[float], float]:
    """Which curves end too far above the interesting range to draw, and that cap (ε).

    The plan's own ``sigma`` is always kept; the cap is ``max(2.5 x max(target, ε), 12)``.
    """
    cap = max(CURVE_CAP[0] * max(target_epsilon, epsilon), CURVE_CAP[1])
    return [s for s, curve in curves.items() if s != sigma and curve.epsilon.iloc[-1] > cap], cap


def epochs_caption(sampling: Sampling, *, sigma: float, left_out: list[float], cap: float) -> str:
    """The caption under the ε-over-epochs chart."""
    note = f" Left out: σ = {', '.join(f'{s:g}' for s in left_out)} (ε would pass {cap:.3g})." if left_out else ""
    return (f"RDP accountant, exact after every epoch (⌈N/B⌉ = {sampling.steps_per_epoch:,} steps each). Your σ = "
            f"{sigma:g} is one of the lines; the dashed line is the target ε.{note} Shaded bands: strong (<1), "
            "moderate (1-5), weak (5-10), very weak (>10). " + REFERENCES_NOTE)


#: Under every planner chart with ε on an axis: what the dotted purple marks are, and why they are no yardstick.
REFERENCES_NOTE = ("Dotted purple lines: ε published by real deployments and research (hover for δ and unit of "
                   "privacy; sources in the Guide, section 3). They are not directly comparable with your plan: "
                   "their unit of privacy, δ and time period differ.")


def handoff_options(settings: Mapping[str, Any], *, epsilon: float, sigma_needed: float | None) -> dict[str, str]:
    """Label of each privacy budget the plan can send to the Train page, by its TrainConfig field."""
    sigma, target = float(settings["noise_multiplier"]), float(settings["target_epsilon"])
    return {"noise_multiplier": f"fixed σ = {sigma:g} (ends at RDP ε ≈ {epsilon_text(epsilon)})",
            "target_epsilon": f"target ε = {target:g} (training calibrates σ"
                              + (f" ≈ {sigma_text(sigma_needed)})" if sigma_needed is not None else ")")}


def handoff(settings: Mapping[str, Any], sampling: Sampling, *, epsilon: Mapping[str, float]) -> dict[str, Any]:
    """What "Use these settings" stores for the Train page.

    Returns ``{"config": TrainConfig fields, "n", "sample_rate", "steps", "epsilon": {accountant: ε}, "source"}``;
    the setting ``handoff_mode`` picks the budget sent: ``"noise_multiplier"`` (σ) or ``"target_epsilon"``.
    """
    config: dict[str, Any] = {} if settings["dataset"] == CUSTOM else {"dataset": settings["dataset"]}
    config.update(batch_size=sampling.batch_size, epochs=int(settings["epochs"]),
                  target_delta=float(settings["target_delta"]), accountant="rdp")
    if settings["handoff_mode"] == "noise_multiplier":
        config["noise_multiplier"] = float(settings["noise_multiplier"])
    else:
        config["target_epsilon"] = float(settings["target_epsilon"])
    return {"config": config, "n": sampling.n, "sample_rate": sampling.sample_rate,
            "steps": sampling.steps(settings["epochs"]), "epsilon": dict(epsilon), "source": "planner"}


def handoff_caption(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """What was sent to Train, and whether it differs from the plan's ``current`` config."""
    label = ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in stored["config"].items())
    return (f":material/check_circle: Sent to Train: {label}."
            + (" (These differ from the inputs above.)" if stored["config"] != current else ""))
