"""Plain-language explanations shown next to the numbers, in the dashboard and in reports.

Kept as data (markdown strings keyed by topic) so pages, reports and tests share
one wording. Each entry is short: two to five sentences a stakeholder can read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dpcore.privacy.bands import EPSILON_BANDS, epsilon_band, format_significant, odds_factor

if TYPE_CHECKING:
    import pandas as pd

TOPICS: dict[str, str] = {
    "epsilon": (
        "**Epsilon (ε)** bounds how much any single training example can change what the model does: "
        "an attacker who sees the model can be at most e^ε times more confident that a given person was "
        "in the training data than that they were not. Smaller is more private. It is a worst-case "
        "guarantee over all people and all attacks, not an average."
    ),
    "delta": (
        "**Delta (δ)** is the small probability that the ε guarantee fails outright. It must be much "
        "smaller than 1/N (N = number of training examples): with δ ≥ 1/N a mechanism that publishes "
        "one random record verbatim would still satisfy the definition."
    ),
    "bands": (
        "**Reading ε.** Below 1: strong, textbook privacy. 1-5: moderate, typical of careful "
        "deployments. 5-10: weak but still bounded. Above 10: very weak; the guarantee barely "
        "constrains an attacker, and above ~50 it means nothing in practice."
    ),
    "noise_multiplier": (
        "**Noise multiplier (σ)** is the standard deviation of the Gaussian noise added to each summed "
        "batch gradient, in units of the clipping bound. More noise, less ε per step, slower learning."
    ),
    "max_grad_norm": (
        "**max_grad_norm (C)** clips every example's gradient to length at most C, so no single example "
        "can move the model by more than C per step; the noise is scaled to C. Too small wastes signal "
        "(every gradient is shrunk), too large wastes privacy (the noise must cover gradients that are "
        "rarely that big)."
    ),
    "clip_fraction": (
        "**Clip fraction** is the share of per-sample gradients longer than C in each step, measured "
        "before noise. Around 50-80 % usually trains best. Near 100 % for the whole run means C is "
        "far below the typical gradient norm; near 0 % means C is larger than needed and the noise "
        "drowns the signal."
    ),
    "batchnorm": (
        "**Why BatchNorm is replaced.** BatchNorm normalises each example with statistics of the whole "
        "batch, so one example's gradient depends on the others and per-example clipping no longer "
        "bounds its influence. DP-SGD needs per-example gradients, so the trainer swaps BatchNorm for "
        "GroupNorm, which normalises each example on its own."
    ),
    "mia": (
        "**Membership inference.** An attacker gets the trained model and a record, and guesses whether "
        "the record was in the training set. The loss-threshold attack guesses 'member' when the "
        "model's loss on the record is low. The ROC curve shows every trade-off between catching "
        "members (true positive rate) and falsely accusing non-members (false positive rate)."
    ),
    "auc": (
        "**AUC near 0.5 is good**: the attacker does no better than a coin flip. AUC well above 0.5 "
        "means the model behaves measurably differently on its training data. A passing attack is not "
        "a proof of privacy: stronger attacks (LiRA, RMIA) may still succeed, and only the ε guarantee "
        "covers every possible attack."
    ),
    "baseline": (
        "**Non-private baseline**: the same model, data, seed and training knobs without clipping or "
        "noise. The gap between its accuracy and the private run's is the price of privacy."
    ),
    "accountants": (
        "**Accountants** turn (σ, sampling rate, steps) into ε. RDP is fast and slightly loose; PRV is "
        "the tightest numerically but slower; GDP is a fast central-limit approximation that can "
        "underestimate ε for few steps. RDP and PRV are upper bounds on the privacy loss of the same "
        "training procedure (PRV up to a small numerical error it accounts for); GDP is an approximation, "
        "not a bound, so report RDP or PRV."
    ),
    "epsilon_limit": (
        "**Epsilon limit** is a hard stop: training ends before the step that would spend more than this "
        "ε, and the run says it stopped for the budget."
    ),
    "lower_bound": (
        "**Empirical ε lower bound**: what an attack actually demonstrates, with statistical confidence. "
        "It can only show that privacy is at least this bad; it never certifies that privacy is good. "
        "A correct implementation never has a lower bound above the accountant's ε (up to the "
        "confidence level)."
    ),
    "secure_mode": (
        "Noise here comes from PyTorch's standard random number generator (Opacus' `secure_mode` needs "
        "torchcsprng, which is not available). Fine for exploration; a production release should be "
        "retrained with a cryptographically secure generator."
    ),
    "hyperparameter_choice": (
        "**Choosing among runs costs privacy too.** A sweep trains k runs per ε (one per clipping bound "
        "and seed) and keeps the best. DP Explorer makes every such choice on a *validation split carved "
        "from the training side*: a fixed slice of the members held out of training (10 % in sweeps), so "
        "the non-members, the test set and the attack's negatives, never take part in a choice and the "
        "chosen run's test accuracy is measured on data no choice has seen. The validation rows are read "
        "directly by the choice, so ε does not protect them; they are not trained on either. And the ε "
        "shown is one run's: releasing the best of several DP runs can leak more than that. Papernot & "
        "Steinke (*Hyperparameter Tuning with Renyi Differential Privacy*, ICLR 2022) show that with a "
        "fixed number of runs the only general bound is composition (k runs can cost up to k times one "
        "run's ε), while running a *random* number of times (e.g. Poisson or truncated negative "
        "binomial) and releasing the best costs only a small, bounded overhead on one run's ε (their "
        "random-stopping theorems). Count the whole search, not just the winner, when you state ε."
    ),
    # ---- added for the Budget planner and Guide pages
    "dpsgd": (
        "**DP-SGD in three moves.** (1) *Clip*: compute each example's gradient separately and shrink "
        "any that is longer than the clipping bound C, so no single example can pull the model far. "
        "(2) *Noise*: add Gaussian noise with standard deviation σ·C to the sum of the clipped gradients "
        "of a batch, enough to hide whether any one example was there. (3) *Account*: an accountant adds "
        "up the privacy each noisy step spends and reports the total as ε at a chosen δ."
    ),
    "sampling": (
        "**Sample rate (q)** is the chance that an example joins a batch. Opacus samples every example "
        "independently (Poisson sampling), so batches vary in size around q·N. With batch size B the "
        "trainer uses q = 1/⌈N/B⌉ and ⌈N/B⌉ steps per epoch; ε depends on q, σ and the number of steps, "
        "not on N itself. Smaller q (bigger datasets) buys a lot of privacy: each example is in fewer steps."
    ),
    "gdp_caveat": (
        "**GDP caveat.** The GDP accountant relies on a central-limit approximation that is accurate "
        "only for many steps with a small sample rate; with few steps or large q it can *underestimate* ε. "
        "Use it for a quick sense of scale and report RDP or PRV."
    ),
    "page_train": (
        "**Train**: pick a dataset and model, a privacy budget (a target ε, or a fixed noise multiplier), "
        "the clipping bound and the usual knobs, then start the run. It runs as a job: watch ε, the clip "
        "fraction, loss and accuracy grow live, cancel it, and read the result with the attack and the "
        "non-private baseline next to it."
    ),
    "page_runs": (
        "**Runs**: every stored run in one table with its ε, accuracy and attack result. Open one, "
        "compare several side by side, continue a run for more epochs, export a report or delete runs."
    ),
    "page_attack_lab": (
        "**Attack lab**: attack a finished run with membership-inference attacks and compare what they "
        "achieve (ROC, AUC, true positives at a low false-positive rate, an empirical ε lower bound) with "
        "the ε the accountant promises."
    ),
    "page_tradeoffs": (
        "**Tradeoffs**: sweep target ε, clipping bound and seed, then read the frontier: accuracy against "
        "ε with the non-private line, attack success against ε, and which clipping bound works best."
    ),
    "page_planner": (
        "**Budget planner**: no training, instant answers. ε from three accountants for your settings, ε "
        "over the epochs for several noise levels, and the noise needed for a target ε. Send the settings "
        "to the Train page with one click, or share the page's URL."
    ),
    "page_guide": (
        "**Guide**: this page. The ideas behind every number in the app, short enough for a demo."
    ),
}


#: One caption sentence for every place that shows a frontier (Tradeoffs page, sweep reports, CLI ``sweep``).
SELECTION_COST = (
    "The best clipping bound per ε is chosen on validation accuracy, on a fixed slice carved from the "
    "training side (members held out of training), never on the non-members; the accuracy shown is the chosen "
    "run's test accuracy, on non-members no choice has seen. The ε shown is one run's: choosing the best of "
    "k runs costs privacy that it does not include (Papernot & Steinke, ICLR 2022; see the Guide)."
)


#: What each EPSILON_BANDS band means, for tables next to the numbers (same wording everywhere).
BAND_MEANINGS: dict[str, str] = {
    "strong": "Textbook privacy: an attacker's odds move by less than a factor of e ≈ 2.7.",
    "moderate": "Typical of careful deployments: an attacker's odds move by at most e^5 ≈ 150.",
    "weak": "Still bounded, but an attacker's odds may move by up to e^10 ≈ 22,000.",
    "very weak": "Barely constrains an attacker; above ~50 it means nothing in practice.",
}


def explain(topic: str) -> str:
    """Markdown text for ``topic`` (one of ``TOPICS``)."""
    return TOPICS[topic]


def epsilon_sentence(epsilon: float, delta: float) -> str:
    """One sentence reading an (epsilon, delta) pair, e.g. for summary cards and reports."""
    if epsilon == float("inf"):
        return "No privacy guarantee: this model was trained without differential privacy."
    band = epsilon_band(epsilon)
    return (f"ε = {epsilon:.2f} at δ = {delta:g}: a {band} guarantee. An attacker's odds that any one "
            f"person was in the training data rise by at most a factor of {odds_factor(epsilon)}.")


def epsilon_band_table() -> pd.DataFrame:
    """The EPSILON_BANDS as a table for people: columns 'ε range', 'reading', 'what it means'."""
    import pandas as pd  # deferred: pandas; the CLI imports this module for its texts only

    rows = []
    for lower, upper, name in EPSILON_BANDS:
        span = f"{lower:g} ≤ ε < {upper:g}" if math.isfinite(upper) else f"ε ≥ {lower:g}"
        if lower == 0:
            span = f"ε < {upper:g}"
        rows.append({"ε range": span, "reading": name, "what it means": BAND_MEANINGS[name]})
    return pd.DataFrame(rows)


__all__ = ["BAND_MEANINGS", "BOUND_CAPTION", "TOPICS", "attack_bound_sentence", "epsilon_band_table",
           "epsilon_sentence", "explain"]


#: Caption next to every ROC that carries the DP trade-off bound (run view, Attack lab, reports, planner).
BOUND_CAPTION = (
    "The dashed line is the most any membership attack can achieve under the DP guarantee of this schedule "
    "(computed from its privacy accounting: TPR ≤ 1 − f(FPR), the trade-off curve of its privacy profile). "
    "The shaded region above it is impossible for every attack, known or not; an empirical curve that "
    "crossed it by more than its sampling error would mean a bug in the training or the accounting."
)


def attack_bound_sentence(*, bound_tpr: float, empirical_tpr: float | None = None, fpr: float = 0.01,
                          attack: str = "this attack", caveat: str | None = None) -> str:
    """'At most X % of members found at 1 % false alarms' (any attack, proven), with the attack's own figure.

    ``bound_tpr`` and ``empirical_tpr`` are fractions (TPR at false-positive rate ``fpr``, also a
    fraction); ``bound_tpr`` of 1 or more (no DP) says there is no limit. ``attack`` names whose TPR it is;
    ``caveat`` (a ``TradeoffCurve.caveat``) replaces "proven by the DP guarantee".

    >>> attack_bound_sentence(bound_tpr=0.0312, empirical_tpr=0.011)
    'Any attack: at most 3.12 % of members found at 1 % false alarms (proven by the DP guarantee); this attack: 1.10 %.'
    """
    rate = f"{_percent(fpr)} false alarms"
    if bound_tpr is None or not math.isfinite(bound_tpr) or bound_tpr >= 1:
        head = f"Any attack: no proven limit at {rate} (no DP guarantee)"
    else:
        head = (f"Any attack: at most {_percent(bound_tpr)} of members found at {rate} "
                f"({caveat or 'proven by the DP guarantee'})")
    if empirical_tpr is None or not math.isfinite(empirical_tpr):
        return head + "."
    return f"{head}; {attack}: {_percent(empirical_tpr)}."


def _percent(fraction: float) -> str:
    """A fraction as a percentage with three significant digits: 0.0312 -> '3.12 %', 0.01 -> '1 %'."""
    value = 100 * float(fraction)
    if math.isclose(value, round(value), rel_tol=1e-9, abs_tol=1e-12) and value >= 1:
        return f"{round(value)} %"
    return f"{format_significant(value)} %"
