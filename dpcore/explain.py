"""Plain-language explanations shown next to the numbers, in the dashboard and in reports.

Kept as data (markdown strings keyed by topic) so pages, reports and tests share
one wording. Each entry is short: two to five sentences a stakeholder can read.
"""

from __future__ import annotations

from dpcore.plots import EPSILON_BANDS, epsilon_band

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
        "underestimate ε for few steps. All three are upper bounds on the true privacy loss of the "
        "same training procedure."
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
            f"person was in the training data rise by at most a factor of {_odds_factor(epsilon)}.")


def _odds_factor(epsilon: float) -> str:
    import math

    factor = math.exp(epsilon)
    return f"{factor:.1f}" if factor < 100 else f"{factor:.3g}"


__all__ = ["EPSILON_BANDS", "TOPICS", "epsilon_sentence", "explain"]
