"""Membership scores and the ``ATTACKS`` registry: loss, stable logit, LiRA (online, offline) and RMIA.

Every score function maps ``(target_phi [N], ref_phi [R, N], ref_in [R, N])`` to a member score ``[N]``
(higher = "more likely a member") on stable logits, so each attack runs the same way against a target
model (``attack_model``) or in a leave-one-out game on a reference pool (``leave_one_out``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from scipy import stats

from dpcore.attacks.metrics import AttackResult, evaluate_scores
from dpcore.attacks.signals import (
    MembershipData,
    class_logits,
    label_array,
    log_prob_true,
    membership_tensors,
    model_logits,
    per_example_loss,
    prob_wrong,
    stable_logit,
)
from dpcore.engine.membership import MembershipLogits, membership_logits
from dpcore.errors import ConfigError

__all__ = ["ATTACKS", "LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS", "AttackSpec", "PoolScores", "attack_model",
           "leave_one_out", "lira_offline_scores", "lira_online_scores", "loss_threshold_attack",
           "loss_threshold_attack_on_logits", "rmia_scores"]

# Below this many reference models LiRA uses one variance shared by all examples (Carlini et al. 2022).
LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS = 64


class PoolScores(Protocol):
    """What ``attack_model`` needs of a reference pool (``dpcore.attacks.reference.ReferencePool`` fits):
    ``scores`` (float ``[M, N]``, phi of example j under model i) and ``in_masks`` (bool ``[M, N]``)."""

    scores: np.ndarray
    in_masks: np.ndarray


def loss_threshold_attack(
    model: torch.nn.Module,
    data: MembershipData,
    *,
    batch_size: int = 1024,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackResult:
    """Loss-threshold attack (Yeom et al. 2018): score = minus the per-example cross-entropy (nats).

    Members are ``data.x_members``/``y_members``, non-members ``data.x_non_members``/``y_non_members``.
    Evaluated in eval mode under ``torch.no_grad`` on the model's device. Needs no reference models.
    """
    membership_tensors(data)  # a clear ConfigError for data without the four tensors
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return loss_threshold_attack_on_logits(membership_logits(model, data, batch_size=batch_size),
                                           n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)


def loss_threshold_attack_on_logits(logits: MembershipLogits, *, n_bootstrap: int = 200, confidence: float = 0.95,
                                    seed: int = 0) -> AttackResult:
    """``loss_threshold_attack`` from one eval pass already made (``dpcore.engine.membership.membership_logits``,
    e.g. a ``RunResult.final_logits``): the same AttackResult, to the last bit, as on the model that gave them,
    without a forward pass. ConfigError when they are not class logits."""
    member_scores = -per_example_loss(class_logits(logits.members), logits.y_members)
    non_member_scores = -per_example_loss(class_logits(logits.non_members), logits.y_non_members)
    return evaluate_scores(member_scores, non_member_scores, name="loss", n_bootstrap=n_bootstrap,
                           confidence=confidence, seed=seed)


# ----------------------------------------------------------------------------------------------------------------------
# Score functions: (target_phi [N], ref_phi [R, N], ref_in [R, N]) -> member score [N]
# ----------------------------------------------------------------------------------------------------------------------


def _check_reference_shapes(target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray) -> None:
    if ref_phi.ndim != 2 or ref_phi.shape != ref_in.shape or ref_phi.shape[1] != target_phi.shape[0]:
        raise ConfigError(
            f"reference scores must be [models, examples] matching the target's {target_phi.shape[0]} examples, "
            f"got scores {ref_phi.shape} and in-masks {ref_in.shape}"
        )


def _masked_mean_var(phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-example mean, per-example variance (ddof 1, NaN where < 2 samples), counts, pooled variance."""
    counts = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, (phi * mask).sum(axis=0) / np.maximum(counts, 1), np.nan)
        squares = (((phi - mean) ** 2) * mask).sum(axis=0)
        var = np.where(counts > 1, squares / np.maximum(counts - 1, 1), np.nan)
    dof = float(np.maximum(counts - 1, 0).sum())
    pooled = float(np.nansum(np.where(counts > 1, squares, 0.0)) / dof) if dof > 0 else float("nan")
    return mean, var, counts, pooled


_MIN_STD = 1e-6


def _lira_std(var: np.ndarray, pooled: float, use_global: bool) -> np.ndarray | float:
    if use_global or not np.all(np.isfinite(var)):
        if not math.isfinite(pooled):
            raise ConfigError("LiRA needs at least two reference models on one side (in or out) to fit a variance")
        return max(math.sqrt(pooled), _MIN_STD)
    return np.maximum(np.sqrt(var), _MIN_STD)


def lira_online_scores(
    target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray, *, global_variance: bool | None = None
) -> np.ndarray:
    """Online LiRA (Carlini et al. 2022): log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out).

    Gaussians are fitted per example to the reference models that did / did not train on it. With
    ``global_variance=None`` one pooled variance per side is used when there are fewer than 64
    reference models (per-example variances are too noisy below that). Returns a log-likelihood ratio
    in nats per example (higher = member). Every example needs at least one in and one out model.
    """
    target_phi, ref_phi, ref_in = np.asarray(target_phi, float), np.asarray(ref_phi, float), np.asarray(ref_in, bool)
    _check_reference_shapes(target_phi, ref_phi, ref_in)
    mean_in, var_in, count_in, pooled_in = _masked_mean_var(ref_phi, ref_in)
    mean_out, var_out, count_out, pooled_out = _masked_mean_var(ref_phi, ~ref_in)
    if (count_in == 0).any() or (count_out == 0).any():
        raise ConfigError(
            f"online LiRA needs every example to have reference models with and without it; "
            f"{int((count_in == 0).sum())} examples have no 'in' and {int((count_out == 0).sum())} no 'out' model "
            f"among {ref_phi.shape[0]}. Use a pool of >= 4 models (2 pairs), or 'lira-offline' / 'rmia'"
        )
    use_global = ref_phi.shape[0] < LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS if global_variance is None else global_variance
    sd_in = _lira_std(var_in, pooled_in, use_global)
    sd_out = _lira_std(var_out, pooled_out, use_global)
    return stats.norm.logpdf(target_phi, mean_in, sd_in) - stats.norm.logpdf(target_phi, mean_out, sd_out)


def lira_offline_scores(
    target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray, *, global_variance: bool | None = None
) -> np.ndarray:
    """Offline LiRA (Carlini et al. 2022): one-sided test against the "out" Gaussian only.

    The paper's score is 1 - Pr[Z > phi] with Z ~ N(mu_out, sd_out^2). This returns
    ``-log Pr[Z > phi]`` (nats), which orders examples identically but does not saturate at 1 for
    strongly memorised examples, so low-FPR thresholds stay resolvable. Higher = member. Only the
    reference models that did not train on an example are used; every example needs at least one.
    """
    target_phi, ref_phi, ref_in = np.asarray(target_phi, float), np.asarray(ref_phi, float), np.asarray(ref_in, bool)
    _check_reference_shapes(target_phi, ref_phi, ref_in)
    mean_out, var_out, count_out, pooled_out = _masked_mean_var(ref_phi, ~ref_in)
    if (count_out == 0).any():
        raise ConfigError(
            f"offline LiRA needs at least one reference model that did not train on each example; "
            f"{int((count_out == 0).sum())} examples have none among {ref_phi.shape[0]}. Use a larger pool"
        )
    use_global = ref_phi.shape[0] < LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS if global_variance is None else global_variance
    sd_out = _lira_std(var_out, pooled_out, use_global)
    return -stats.norm.logsf(target_phi, mean_out, sd_out)


def rmia_scores(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    ref_in: np.ndarray,
    *,
    a: float = 0.3,
    gamma: float = 1.0,
    offline: bool = False,
    population: np.ndarray | None = None,
) -> np.ndarray:
    """RMIA (Zarifzadeh, Liu, Shokri 2024): how often x's likelihood ratio beats population points z.

    Pr(x|theta) is the target's probability of the true label (sigmoid(phi)); Pr(x) averages it over
    reference models, the in and out halves weighted equally. Where only out models exist (or with
    ``offline=True``) the paper's approximation Pr(x) = 0.5 * ((1 + a) * mean_out + (1 - a)) is used
    (and its inverse where only in models exist), so one pair of reference models is enough.
    score(x) = fraction of z in ``population`` (indices into the examples; default all of them, x
    itself excluded) with ratio(x) / ratio(z) > ``gamma``. Returns fractions in [0, 1]; higher = member.
    Everything is computed on 1 - p in the log domain, so near-certain predictions keep their order.
    """
    target_phi, ref_phi, ref_in = np.asarray(target_phi, float), np.asarray(ref_phi, float), np.asarray(ref_in, bool)
    _check_reference_shapes(target_phi, ref_phi, ref_in)
    if not 0.0 < a <= 1.0:
        raise ConfigError(f"RMIA offline parameter a must be in (0, 1], got {a}")
    if gamma <= 0:
        raise ConfigError(f"RMIA gamma must be > 0, got {gamma}")
    if ref_phi.shape[0] == 0:
        raise ConfigError("RMIA needs at least one reference model; got none")
    wrong = prob_wrong(ref_phi)  # 1 - Pr(x | reference model)
    count_in, count_out = ref_in.sum(axis=0), (~ref_in).sum(axis=0)
    wrong_in = (wrong * ref_in).sum(axis=0) / np.maximum(count_in, 1)
    wrong_out = (wrong * ~ref_in).sum(axis=0) / np.maximum(count_out, 1)
    # The paper's p_in ~ a * p_out + (1 - a) is (1 - p_in) ~ a * (1 - p_out): impute a missing side with it.
    if offline:
        wrong_out = np.where(count_out == 0, np.minimum(wrong_in / a, 1.0), wrong_out)
        wrong_in = a * wrong_out
    else:
        wrong_in = np.where(count_in == 0, a * wrong_out, wrong_in)
        wrong_out = np.where(count_out == 0, np.minimum(wrong_in / a, 1.0), wrong_out)
    log_marginal = np.log1p(-0.5 * (wrong_in + wrong_out))
    log_ratio = log_prob_true(target_phi) - log_marginal
    pool_index = np.arange(len(target_phi)) if population is None else np.asarray(population, dtype=np.int64)
    z_sorted = np.sort(log_ratio[pool_index])
    # count z with log_ratio_z < log_ratio_x - log(gamma)
    wins = np.searchsorted(z_sorted, log_ratio - math.log(gamma), side="left").astype(float)
    if population is None and gamma < 1.0:
        wins -= 1.0  # x itself passed its own test; it is not a population point for itself
    denominator = len(pool_index) - (1 if population is None else 0)
    return np.clip(wins, 0.0, None) / max(denominator, 1)


def _loss_score(target_phi: np.ndarray, ref_phi: np.ndarray | None = None, ref_in: np.ndarray | None = None
                ) -> np.ndarray:
    """Minus the cross-entropy (nats) from phi: -log sigmoid(phi)."""
    return log_prob_true(np.asarray(target_phi, float))


def _logit_score(target_phi: np.ndarray, ref_phi: np.ndarray | None = None, ref_in: np.ndarray | None = None
                 ) -> np.ndarray:
    """The stable logit phi itself."""
    return np.asarray(target_phi, float)


# ----------------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackSpec:
    """One entry of ``ATTACKS``.

    ``score_fn(target_phi [N], ref_phi [R, N], ref_in [R, N], **options) -> scores [N]`` works on
    stable logits, so every attack runs the same way against a target model (``attack_model``) or in a
    leave-one-out game on a pool (``leave_one_out``). ``min_reference_models`` is the fewest reference
    models it works with (0: none needed); leave-one-out needs two more (the target and its partner).
    """

    name: str
    title: str
    description: str
    reference: str
    score_fn: Callable[..., np.ndarray]
    min_reference_models: int = 0

    @property
    def needs_references(self) -> bool:
        """True for attacks that need a ``ReferencePool``."""
        return self.min_reference_models > 0

    def __call__(self, model: torch.nn.Module, data: MembershipData, **kwargs: Any) -> AttackResult:
        """``attack_model(self.name, model, data, **kwargs)``."""
        return attack_model(self.name, model, data, **kwargs)


ATTACKS: dict[str, AttackSpec] = {
    "loss": AttackSpec(
        "loss", "Loss threshold", "Members tend to have lower training loss: score = minus the cross-entropy.",
        "Yeom et al. 2018, Privacy Risk in Machine Learning", _loss_score),
    "logit": AttackSpec(
        "logit", "Stable logit", "Threshold on phi = log p_y - log(1 - p_y), computed from logits without "
        "softmax saturation.", "Carlini et al. 2022, Membership Inference Attacks From First Principles",
        _logit_score),
    "lira-online": AttackSpec(
        "lira-online", "LiRA (online)", "Likelihood ratio of phi under Gaussians fitted to reference models "
        "trained with and without each example.", "Carlini et al. 2022, Membership Inference Attacks From "
        "First Principles", lira_online_scores, min_reference_models=4),
    "lira-offline": AttackSpec(
        "lira-offline", "LiRA (offline)", "One-sided test: how unusually high phi is for models that did not "
        "train on the example.", "Carlini et al. 2022, Membership Inference Attacks From First Principles",
        lira_offline_scores, min_reference_models=4),
    "rmia": AttackSpec(
        "rmia", "RMIA", "Likelihood ratio Pr(x|model)/Pr(x) compared against population points; works with "
        "one pair of reference models.", "Zarifzadeh, Liu, Shokri 2024, Low-Cost High-Power Membership "
        "Inference Attacks", rmia_scores, min_reference_models=2),
}


def _resolve_attack(attack: str | AttackSpec | Callable[..., np.ndarray]) -> tuple[str, Callable[..., np.ndarray], int]:
    if isinstance(attack, AttackSpec):
        return attack.name, attack.score_fn, attack.min_reference_models
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ConfigError(f"unknown attack {attack!r}; choose one of {sorted(ATTACKS)}")
        spec = ATTACKS[attack]
        return spec.name, spec.score_fn, spec.min_reference_models
    if callable(attack):
        return getattr(attack, "__name__", "custom"), attack, 0
    raise ConfigError(f"attack must be a name in {sorted(ATTACKS)} or a score function, got {attack!r}")


def attack_model(
    attack: str | AttackSpec,
    model: torch.nn.Module,
    data: MembershipData,
    *,
    pool: PoolScores | None = None,
    batch_size: int = 1024,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> AttackResult:
    """Run attack ``attack`` (a key of ``ATTACKS``) against a trained target model.

    Reference attacks need ``pool``: a ``ReferencePool`` (or anything with its ``scores`` and ``in_masks``)
    built on the target's members followed by its non-members (``torch.cat([x_members, x_non_members])``),
    trained like the target. ``options`` go to the score function (e.g. ``a=0.3`` for RMIA). The ROC rests
    on the target's own members and non-members; for many more non-members use ``leave_one_out`` on the pool.
    """
    name, score_fn, min_models = _resolve_attack(attack)
    x_in, y_in, x_out, y_out = membership_tensors(data)
    n_members = len(x_in)
    phi = np.concatenate([
        stable_logit(model_logits(model, x_in, batch_size=batch_size), label_array(y_in)),
        stable_logit(model_logits(model, x_out, batch_size=batch_size), label_array(y_out)),
    ])
    details: dict[str, Any] = {}
    if min_models > 0:
        if pool is None:
            raise ConfigError(f"attack {name!r} needs a reference pool (reference_pool(train_fn, x, y)); none given")
        n_models, n_examples = np.shape(pool.scores)
        if n_examples != len(phi):
            raise ConfigError(
                f"the reference pool covers {n_examples} examples but the target has {len(phi)} "
                f"({n_members} members + {len(phi) - n_members} non-members); build the pool on exactly these"
            )
        if n_models < min_models:
            raise ConfigError(f"attack {name!r} needs at least {min_models} reference models, the pool has "
                              f"{n_models}; build it with n_models >= {min_models}")
        scores = score_fn(phi, pool.scores, pool.in_masks, **options)
        details["n_reference_models"] = int(n_models)
    else:
        scores = score_fn(phi, None, None, **options)
    return evaluate_scores(scores[:n_members], scores[n_members:], name=name, n_bootstrap=n_bootstrap,
                           confidence=confidence, seed=seed, details=details)


def leave_one_out(
    scores_matrix: np.ndarray,
    in_masks: np.ndarray,
    attack: str | AttackSpec | Callable[..., np.ndarray],
    *,
    targets: Sequence[int] | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> AttackResult:
    """Leave-one-out evaluation on a reference pool: each model in turn is the target, the rest its references.

    ``scores_matrix``/``in_masks`` are ``[M, N]`` (a ``ReferencePool``'s ``scores``/``in_masks``).
    Per-example scores and in/out labels are pooled over all targets (or over ``targets``, a subset of
    model indices), so the ROC rests on about M*N/2 non-members rather than N/2. A model trained on
    exactly the complement of the target's data (its pair partner) is left out of the references too:
    its in-mask would tell the attack the target's membership (with one reference, every in/out
    imbalance becomes a label leak). So M complementary pairs leave M - 2 references per target.
    ``options`` go to the attack's score function. ``details`` records targets and reference counts.
    """
    scores_matrix = np.asarray(scores_matrix, dtype=np.float64)
    in_masks = np.asarray(in_masks, dtype=bool)
    if scores_matrix.ndim != 2 or scores_matrix.shape != in_masks.shape:
        raise ConfigError(f"scores and in-masks must both be [models, examples], got {scores_matrix.shape} "
                          f"and {in_masks.shape}")
    name, score_fn, min_models = _resolve_attack(attack)
    n_models = scores_matrix.shape[0]
    chosen = range(n_models) if targets is None else [int(t) for t in targets]
    member_parts, non_member_parts, reference_counts = [], [], []
    for target in chosen:
        if not 0 <= target < n_models:
            raise ConfigError(f"target index {target} out of range for a pool of {n_models} models")
        partners = np.all(in_masks == ~in_masks[target], axis=1)
        references = (np.arange(n_models) != target) & ~partners
        if references.sum() < max(min_models, 0) or not in_masks[target].any() or in_masks[target].all():
            raise ConfigError(
                f"leave-one-out with {name!r} needs at least {min_models} reference models besides the target and "
                f"its complementary partner, and targets with both members and non-members; the pool has "
                f"{n_models} models. Build it with n_models >= {min_models + 2}"
            )
        scores = score_fn(scores_matrix[target], scores_matrix[references], in_masks[references], **options)
        member_parts.append(scores[in_masks[target]])
        non_member_parts.append(scores[~in_masks[target]])
        reference_counts.append(int(references.sum()))
    if not member_parts:
        raise ConfigError("leave-one-out needs at least one target model; targets was empty")
    return evaluate_scores(
        np.concatenate(member_parts), np.concatenate(non_member_parts), name=name, n_bootstrap=n_bootstrap,
        confidence=confidence, seed=seed,
        details={"evaluation": "leave-one-out", "n_targets": len(member_parts),
                 "n_reference_models": min(reference_counts)},
    )
