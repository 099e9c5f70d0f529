"""Membership-inference attacks and empirical privacy lower bounds.

Attacks score every example (higher = "more likely a member"); ``evaluate_scores`` turns member and
non-member scores into an ``AttackResult``; ``empirical_epsilon`` and ``one_run_audit`` turn attack outcomes
into statistical *lower bounds* on epsilon (never the real epsilon). The submodules, lowest first:

- ``signals``: model logits, per-example loss and stable logit (``MembershipData``)
- ``metrics``: Clopper-Pearson and bootstrap intervals, ``OperatingPoint``, ``AttackResult``, ``evaluate_scores``
- ``scores``: LiRA, RMIA, loss and logit scores, the ``ATTACKS`` registry, ``attack_model``, ``leave_one_out``
- ``reference``: ``ReferencePool`` and ``reference_pool`` (reference models trained like the target)
- ``bounds``: ``EpsilonBound``, ``empirical_epsilon``, the one-run canary audit, its p-values and power
- ``canaries``: mislabelled canaries for the one-run audit; ``gradient_canaries``: white-box Dirac canaries
- ``groups``: results by class or slice (``group_results``, ``slice_keys``, ``compare_groups``)

The names below are re-exported here: ``from dpcore.attacks import loss_threshold_attack`` is the public API.
"""

from __future__ import annotations

from dpcore.attacks.bounds import (
    ONE_RUN_GUESS_SHARES,
    EpsilonBound,
    empirical_epsilon,
    epsilon_lower_bound_from_counts,
    one_run_audit,
    one_run_audit_best,
    one_run_audit_power,
    one_run_guess_choices,
    one_run_p_value,
    one_run_power,
)
from dpcore.attacks.canaries import CanarySet, make_canaries, score_canaries
from dpcore.attacks.metrics import (
    DEFAULT_FPRS,
    AttackResult,
    OperatingPoint,
    bootstrap_auc,
    clopper_pearson,
    evaluate_scores,
)
from dpcore.attacks.reference import POOL_SIZES, ReferencePool, pool_in_masks, reference_pool, trainer_train_fn
from dpcore.attacks.scores import (
    ATTACKS,
    AttackSpec,
    attack_model,
    leave_one_out,
    lira_offline_scores,
    lira_online_scores,
    loss_threshold_attack,
    loss_threshold_attack_on_logits,
    rmia_scores,
)
from dpcore.attacks.signals import MembershipData, model_logits, per_example_loss, stable_logit

__all__ = [
    "ATTACKS",
    "DEFAULT_FPRS",
    "ONE_RUN_GUESS_SHARES",
    "POOL_SIZES",
    "AttackResult",
    "AttackSpec",
    "CanarySet",
    "EpsilonBound",
    "MembershipData",
    "OperatingPoint",
    "ReferencePool",
    "attack_model",
    "bootstrap_auc",
    "clopper_pearson",
    "empirical_epsilon",
    "epsilon_lower_bound_from_counts",
    "evaluate_scores",
    "leave_one_out",
    "lira_offline_scores",
    "lira_online_scores",
    "loss_threshold_attack",
    "loss_threshold_attack_on_logits",
    "make_canaries",
    "model_logits",
    "one_run_audit",
    "one_run_audit_best",
    "one_run_audit_power",
    "one_run_guess_choices",
    "one_run_p_value",
    "one_run_power",
    "per_example_loss",
    "pool_in_masks",
    "reference_pool",
    "rmia_scores",
    "score_canaries",
    "stable_logit",
    "trainer_train_fn",
]
