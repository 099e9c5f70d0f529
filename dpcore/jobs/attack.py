"""Attack evaluation of a stored run: reference-model pool, membership-inference attacks and empirical
epsilon lower bounds, computed as one job and saved with the run.

``run_attack_suite(store, run_id, ...)`` does the whole evaluation and writes ``attack.json`` (numbers,
ROC points, most vulnerable members) and ``attack_scores.npz`` (per-example scores) into the target
run's artifacts, plus headline numbers into its summary (``lira_auc``, ``empirical_epsilon_lower``, ...).
``submit_attack`` queues it as a job of kind 'attack'; ``load_attack_result``, ``tpr_table``,
``epsilon_table`` and ``vulnerable_members`` read it back for the dashboard, the CLI and reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Imported here, not inside functions: jobs run on worker threads, and a lazy import there can race with
# Streamlit's reloader dropping a changed module from sys.modules.
from dpcore import attacks as attack_lib
from dpcore.atomic import atomic_write, atomic_write_text
from dpcore.attacks import gradient_canaries
from dpcore.config import TrainConfig
from dpcore.engine.data import SplitData, load_for_config
from dpcore.engine.training import fresh_model, train
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs.attack_estimate import attack_speed, estimate_seconds
from dpcore.jobs.attack_pool import leave_one_out, pool_cache_path, reference_config, train_pool
from dpcore.jobs.queue import JobQueue
from dpcore.jsonable import json_number
from dpcore.privacy.caveats import EpsilonStatus
from dpcore.store.heartbeat import Heartbeat
from dpcore.store.records import StoredRun
from dpcore.store.runs import ACTIVE_STATUSES, DONE, RunRecord, RunStore, utc_now

__all__ = [
    "ATTACK_FILE",
    "ATTACK_KIND",
    "DEFAULT_ATTACKS",
    "AttackOptions",
    "TargetRun",
    "attack_runner",
    "attack_speed",
    "black_box_canary_audit",
    "estimate_seconds",
    "load_target",
    "pool_cache_path",
    "reference_config",
    "run_attack_suite",
    "submit_attack",
    "summary_fields",
    "white_box_canary_audit",
]

ATTACK_KIND = "attack"
ATTACK_FILE = "attack.json"
SCORES_FILE = "attack_scores.npz"
RESULT_VERSION = 2  # 2: epsilon.accountant is the proven bound (RDP for a GDP run), not GDP's ε
DEFAULT_ATTACKS: tuple[str, ...] = ("loss", "lira-online", "rmia")
MAX_MODELS = 256
TOP_K = 16
# Confidence of every interval and of the combined lower bound; each of k attacks gets alpha / k
# (Bonferroni), so the largest of their bounds still holds with this confidence.
CONFIDENCE = 0.95
# One-run canary audit: black-box (mislabelled input canaries, one extra training) or white-box (Dirac gradient
# canaries in a DP-SGD loop with the run's sigma, q, C and steps; see attacks.gradient_canaries). The guess counts
# are attack_lib.ONE_RUN_GUESS_SHARES of the canaries, Bonferroni-corrected for that choice.
CANARY_MODES: dict[str, str] = {
    "black-box": "black-box: mislabelled training examples, scored from the final model's outputs",
    "white-box": "white-box: gradient canaries, scored from every step's privatised gradient",
}
DEFAULT_CANARY_MODE = "white-box"
DEFAULT_CANARIES_BY_MODE: dict[str, int] = {"black-box": 256, "white-box": 4000}
DEFAULT_CANARIES = DEFAULT_CANARIES_BY_MODE["black-box"]
MIN_CANARIES = 20
MAX_CANARIES = 20_000
CANARY_COMPARE_NOTE = (
    "The canary audit is its own training run (black-box: fewer members, so another sample rate q; white-box: "
    "the run's σ, q and steps with gradient canaries), so its bound must be compared with that run's own ε, "
    "shown beside it, not with the target run's ε. Its power is the largest ε it could certify were every "
    "guess right: a run whose ε exceeds the power cannot be caught overspending by this audit."
)
SINGLE_RUN_NOTE = (
    "Attack-based lower bounds use the target's own members and non-members. They all come from one model, "
    "so they are not independent trials: read them as evidence of leakage, not as a proof. The one-run canary "
    "audit (Steinke, Nasr, Jagielski 2023) gives a bound with a proof."
)

ProgressCallback = Callable[[int, int, str], None]


class _Stopped(Exception):
    """Raised inside pool callbacks to abandon the evaluation when a stop was requested."""


# ---------------------------------------------------------------------- options
@dataclass(frozen=True)
class AttackOptions:
    """What to run against a target run: attack names (keys of ``attack_lib.ATTACKS``), reference-pool size
    ``n_models`` (even; ignored when no chosen attack needs references), ``seed`` of the pool halves and
    bootstraps, ``canaries`` (0 = no one-run canary audit, else the number of canaries) and ``canary_mode``
    (a key of ``CANARY_MODES``)."""

    target_run_id: str
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    n_models: int = attack_lib.POOL_SIZES["standard"]
    seed: int = 0
    canaries: int = 0
    canary_mode: str = DEFAULT_CANARY_MODE

    @property
    def needs_pool(self) -> bool:
        """True when a chosen attack needs reference models."""
        return any(attack_lib.ATTACKS[name].needs_references for name in self.attacks)

    def validate(self) -> AttackOptions:
        """Check every field; return a normalised copy or raise ``ConfigError``."""
        names = tuple(dict.fromkeys(str(name).strip() for name in self.attacks if str(name).strip()))
        if not names:
            raise ConfigError(f"choose at least one attack; available: {', '.join(attack_lib.ATTACKS)}")
        unknown = [name for name in names if name not in attack_lib.ATTACKS]
        if unknown:
            raise ConfigError(f"unknown attack(s) {', '.join(map(repr, unknown))}; choose from "
                              f"{', '.join(attack_lib.ATTACKS)}")
        options = dataclasses.replace(self, attacks=names)
        if isinstance(self.n_models, bool) or not isinstance(self.n_models, int):
            raise ConfigError(f"the number of reference models must be a whole number, got {self.n_models!r}")
        if options.needs_pool:
            fewest = max(attack_lib.ATTACKS[name].min_reference_models for name in names)
            fewest += fewest % 2
            if not fewest <= self.n_models <= MAX_MODELS or self.n_models % 2:
                needing = ", ".join(name for name in names if attack_lib.ATTACKS[name].needs_references)
                raise ConfigError(
                    f"{needing} need an even number of reference models between {fewest} and {MAX_MODELS}, got "
                    f"{self.n_models}; the presets are {attack_lib.POOL_SIZES}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2^32), got {self.seed!r}")
        if isinstance(self.canaries, bool) or not isinstance(self.canaries, int) or self.canaries < 0:
            raise ConfigError(f"canaries must be 0 (no canary audit) or a whole number >= {MIN_CANARIES}, "
                              f"got {self.canaries!r}")
        if 0 < self.canaries < MIN_CANARIES:
            raise ConfigError(f"a canary audit needs at least {MIN_CANARIES} canaries to say anything, got "
                              f"{self.canaries}; use 0 to skip it")
        if self.canaries > MAX_CANARIES:
            raise ConfigError(f"at most {MAX_CANARIES} canaries, got {self.canaries}")
        if self.canary_mode not in CANARY_MODES:
            raise ConfigError(f"canary_mode must be one of {', '.join(CANARY_MODES)}, got {self.canary_mode!r}")
        return options

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"target_run_id": self.target_run_id, "attacks": list(self.attacks), "n_models": self.n_models,
                "seed": self.seed, "canaries": self.canaries, "canary_mode": self.canary_mode}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AttackOptions:
        """Inverse of ``to_dict``."""
        return cls(target_run_id=str(values["target_run_id"]), attacks=tuple(values.get("attacks", DEFAULT_ATTACKS)),
                   n_models=int(values.get("n_models", attack_lib.POOL_SIZES["standard"])),
                   seed=int(values.get("seed", 0)), canaries=int(values.get("canaries", 0)),
                   canary_mode=str(values.get("canary_mode", "black-box")))


# ---------------------------------------------------------------------- the target
@dataclass
class TargetRun:
    """A finished run loaded back from the store: its record, resolved config, trained model and data."""

    record: RunRecord
    config: TrainConfig
    model: torch.nn.Module
    data: SplitData

    @property
    def accountant_epsilon(self) -> float:
        """Epsilon the accountant reported for the run (``math.inf`` without DP or when not stored; for GDP an
        approximation, see ``epsilon_status``)."""
        epsilon = StoredRun.from_record(self.record).final_epsilon
        return math.inf if math.isnan(epsilon) else epsilon

    @property
    def epsilon_status(self) -> EpsilonStatus:
        """The run's ε caveats and ``bound``: the proven upper bound (nats) every lower bound is compared with
        (the run's own ε under RDP/PRV, the RDP ε of its schedule for GDP, None without DP or Poisson sampling)."""
        return StoredRun.from_record(self.record).epsilon_status


def check_target(record: RunRecord) -> None:
    """Raise ``DPExplorerError`` unless ``record`` is a finished training run (whose weights can be attacked)."""
    if record.kind != "train":
        raise DPExplorerError(f"run {record.id} is a {record.kind!r} job, not a training run; pick a training run "
                              "to attack")
    if record.status != DONE:
        raise DPExplorerError(f"run {record.id} is {record.status}; only finished training runs can be attacked "
                              "(wait for it to finish, or train it again)")


def load_target(store: RunStore, run_id: str) -> TargetRun:
    """Load a finished training run: config, weights into a freshly built model (eval mode, CPU), and data."""
    record = store.get(run_id)
    check_target(record)
    config = record.train_config().resolve()
    data = load_for_config(config)
    model, _ = fresh_model(config, data)
    try:
        model.load_state_dict(store.load_weights(run_id))
    except RuntimeError as exc:  # shapes do not match: the dataset changed since the run
        raise DPExplorerError(f"the weights of run {run_id} do not fit a {config.model!r} model for "
                              f"{config.dataset!r} as it loads now ({str(exc).splitlines()[0]}); "
                              "train it again") from None
    model.eval()
    with torch.no_grad():
        if any(not torch.isfinite(p).all() for p in model.parameters()):
            raise DPExplorerError(f"run {run_id} has non-finite weights (training diverged); nothing to attack")
    return TargetRun(record=record, config=config, model=model, data=data)


def _with_members(data: SplitData, x: torch.Tensor, y: torch.Tensor) -> SplitData:
    """``data`` with other members (same non-members, info.n_members updated, CSV rows dropped)."""
    info = dataclasses.replace(data.info, n_members=len(x))
    return dataclasses.replace(data, info=info, x_members=x, y_members=y, raw=None)


# ---------------------------------------------------------------------- the evaluation
def run_attack_suite(
    store: RunStore,
    target_run_id: str,
    *,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    n_models: int = 16,
    seed: int = 0,
    canaries: int = 0,
    canary_mode: str = DEFAULT_CANARY_MODE,
    top_k: int = TOP_K,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressCallback | None = None,
    attack_run_id: str | None = None,
    threads: int | None = 1,
) -> dict[str, Any] | None:
    """Attack a finished training run and store the results with it; return the stored result dict.

    Builds (or loads from the run's artifacts) a pool of ``n_models`` reference models trained like the
    target (see ``reference_config``), runs each attack in ``attacks`` against the target's members and
    non-members, evaluates it leave-one-out on the pool too, and computes a lower bound on epsilon (nats,
    at the run's delta) from each attack's scores. With ``canaries`` > 0 a one-run canary audit runs too:
    ``canary_mode`` 'black-box' trains one extra model with that many mislabelled canaries, 'white-box' one
    DP-SGD run with the target's sigma, q, C and steps and that many gradient canaries (see
    ``white_box_canary_audit``); either stores its own run's epsilon and the audit's power beside its bound.
    ``on_progress(done, total, phase)`` counts trained
    models. Writes ``attack.json`` and ``attack_scores.npz`` into the run's artifacts and headline numbers
    into its summary (see ``summary_fields``). Returns None, storing nothing, when ``should_stop()``
    answered True. Raises ``ConfigError``/``DPExplorerError`` for bad options or a run that cannot be attacked.
    ``threads`` is the number of CPU threads torch uses meanwhile (restored afterwards; None leaves it alone):
    the small models here train fastest on one, and several OpenMP threads on a busy shared machine were
    measured 20-80x slower (synthetic reference model: 0.1 s with one thread, 2-8 s with two on 2 busy cores).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _run_attack_suite(store, target_run_id, attacks=attacks, n_models=n_models, seed=seed,
                                 canaries=canaries, canary_mode=canary_mode, top_k=top_k, should_stop=should_stop,
                                 on_progress=on_progress, attack_run_id=attack_run_id)
    finally:
        if threads is not None:
            torch.set_num_threads(previous)


@dataclass(frozen=True)
class _Plan:
    """What one attack evaluation will do: validated options, the loaded target and the reference config."""

    options: AttackOptions
    target: TargetRun
    ref_cfg: TrainConfig
    n_canaries: int
    total: int  # progress units: reference models plus one for the canary model


def _plan(store: RunStore, target_run_id: str, options: AttackOptions) -> _Plan:
    """Load the target and check the options fit it (ConfigError when the batch is larger than a pool half)."""
    target = load_target(store, target_run_id)
    data, summary = target.data, target.record.summary
    ref_cfg = reference_config(target.config, noise_multiplier=summary.get("noise_multiplier"),
                               epochs_done=summary.get("epochs_done"))
    pool_size = data.n_members + data.n_non_members
    if options.needs_pool and ref_cfg.batch_size > pool_size // 2:
        raise ConfigError(f"the run's batch size {ref_cfg.batch_size} is larger than the {pool_size // 2} examples "
                          "each reference model trains on; attack a run with a smaller batch size")
    n_canaries = min(options.canaries, data.n_members // 2) if options.canary_mode == "black-box" else options.canaries
    total = (options.n_models if options.needs_pool else 0) + (1 if n_canaries else 0)
    return _Plan(options, target, ref_cfg, n_canaries, total)


def _canary_audit(plan: _Plan, stop: Callable[[], bool]) -> dict[str, Any] | None:
    """The one-run canary audit the plan asks for (white-box or black-box); None when stopped."""
    options, target = plan.options, plan.target
    if options.canary_mode == "white-box":
        return white_box_canary_audit(target.data, target.config, target.record.summary, n_canaries=plan.n_canaries,
                                      seed=options.seed, should_stop=stop)
    return black_box_canary_audit(target.data, plan.ref_cfg, n_canaries=plan.n_canaries, seed=options.seed,
                                  should_stop=stop)


def _score_attacks(plan: _Plan, pool: attack_lib.ReferencePool | None, top_k: int
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Run every chosen attack on the target: (results by name, leave-one-out results on the pool, raw scores)."""
    options, target = plan.options, plan.target
    alpha_each = (1.0 - CONFIDENCE) / len(options.attacks)
    results, pool_results, scores = {}, {}, {}
    for name in options.attacks:
        spec = attack_lib.ATTACKS[name]
        result = attack_lib.attack_model(name, target.model, target.data,
                                         pool=pool if spec.needs_references else None, seed=options.seed,
                                         confidence=CONFIDENCE)
        bound = attack_lib.empirical_epsilon(result.member_scores, result.non_member_scores,
                                             delta=target.config.target_delta, alpha=alpha_each, seed=options.seed)
        order = np.argsort(-result.member_scores, kind="stable")[:top_k]
        results[name] = {
            **result.to_dict(), "title": spec.title, "roc": result.roc_points(),
            "tpr_at_fpr_raw": {f"{f:g}": result.tpr_at_fpr(f) for f in attack_lib.DEFAULT_FPRS},
            "epsilon_bound": bound.to_dict(),
            "top_members": [{"index": int(i), "score": json_number(result.member_scores[i])} for i in order],
        }
        scores[name] = (result.member_scores, result.non_member_scores)
        if pool is not None:
            pool_results[name] = leave_one_out(pool, name, seed=options.seed, confidence=CONFIDENCE)
    return results, pool_results, scores


def _target_info(target: TargetRun) -> dict[str, Any]:
    """The ``target`` entry of a stored result: what was attacked (its ε is the run's own reported one)."""
    cfg, data, summary = target.config, target.data, target.record.summary
    return {
        "label": target.record.name, "dataset": cfg.dataset, "kind": data.info.kind, "model": cfg.model,
        "private": cfg.private, "final_epsilon": json_number(target.accountant_epsilon),
        "target_delta": cfg.target_delta, "accountant": cfg.accountant if cfg.private else None,
        "noise_multiplier": summary.get("noise_multiplier"), "n_members": data.n_members,
        "n_non_members": data.n_non_members, "train_accuracy": summary.get("train_accuracy"),
        "test_accuracy": summary.get("test_accuracy"), "seconds": summary.get("seconds"),
    }


def _epsilon_info(target: TargetRun, results: Mapping[str, Any], canary: dict[str, Any] | None) -> dict[str, Any]:
    """The ``epsilon`` entry: ``accountant`` is the proven upper bound (None: no DP or no proven bound; for a GDP
    run the RDP bound of its schedule, not its GDP approximation), ``bound_accountant`` what proved it,
    ``reported`` the run's own ε; the best lower bound over the attacks, and the canary audit."""
    bounds = [(name, entry["epsilon_bound"]["epsilon_lower"]) for name, entry in results.items()]
    best_attack, best_bound = max(bounds, key=lambda item: item[1])
    status = target.epsilon_status
    return {
        "accountant": json_number(status.bound), "bound_accountant": status.bound_accountant,
        "reported": json_number(target.accountant_epsilon),
        "lower_bound": best_bound, "lower_bound_attack": best_attack, "confidence": CONFIDENCE,
        "alpha_per_attack": (1.0 - CONFIDENCE) / len(results), "note": SINGLE_RUN_NOTE, "canary": canary,
    }


def _run_attack_suite(store: RunStore, target_run_id: str, *, attacks: Sequence[str], n_models: int, seed: int,
                      canaries: int, canary_mode: str, top_k: int, should_stop: Callable[[], bool] | None,
                      on_progress: ProgressCallback | None, attack_run_id: str | None) -> dict[str, Any] | None:
    started = time.perf_counter()
    options = AttackOptions(target_run_id, tuple(attacks), n_models, seed, canaries, canary_mode).validate()
    stop = should_stop or (lambda: False)
    plan = _plan(store, target_run_id, options)
    total = plan.total
    progress = on_progress or (lambda done, total, phase: None)
    if stop():
        return None
    progress(0, total, "loading the target run")
    pool, pool_info = None, None
    if options.needs_pool:
        try:
            pool, pool_info = _build_pool(store, plan, stop, progress)
        except _Stopped:
            return None
    canary_info = None
    if plan.n_canaries:
        if stop():
            return None
        progress(total - 1, total, f"training the canary model ({options.canary_mode})")
        canary_info = _canary_audit(plan, stop)
        if canary_info is None:
            return None
    progress(total, total, "scoring the attacks")
    results, pool_results, scores = _score_attacks(plan, pool, top_k)
    result_dict = {
        "version": RESULT_VERSION, "target_run_id": target_run_id, "attack_run_id": attack_run_id,
        "created": utc_now(), "seconds": round(time.perf_counter() - started, 3), "options": options.to_dict(),
        "target": _target_info(plan.target), "pool": pool_info, "attacks": results, "pool_evaluation": pool_results,
        "strongest_attack": max(options.attacks, key=lambda name: results[name]["auc"]),
        "epsilon": _epsilon_info(plan.target, results, canary_info),
    }
    _save_result(store, target_run_id, result_dict, scores)
    store.update_summary(target_run_id, **summary_fields(result_dict))
    return result_dict


def _build_pool(store: RunStore, plan: _Plan, stop: Callable[[], bool], progress: ProgressCallback
                ) -> tuple[attack_lib.ReferencePool, dict[str, Any]]:
    """``train_pool`` for the plan, counting progress in trained models; raises _Stopped when a stop is asked."""
    def on_model(done: int, n_models: int) -> None:
        progress(done, plan.total, f"trained reference model {done} of {n_models}")
        if stop():
            raise _Stopped

    if stop():
        raise _Stopped
    progress(0, plan.total, f"training reference model 1 of {plan.options.n_models}")
    return train_pool(store, plan.target.record, plan.target.data, plan.ref_cfg, n_models=plan.options.n_models,
                      seed=plan.options.seed, on_model=on_model)


def black_box_canary_audit(data: SplitData, ref_cfg: TrainConfig, *, n_canaries: int, seed: int,
                           should_stop: Callable[[], bool] | None = None) -> dict[str, Any] | None:
    """Train one model (``ref_cfg``, seed + 1) on the members with ``n_canaries`` of them mislabelled and each
    kept with probability 1/2, score the canaries from its outputs and run the one-run audit at several guess
    counts (``attack_lib.one_run_audit_best``). Returns the stored dict: the bound (nats), ``power`` (nats),
    ``mode``, and the canary run's own ``accountant_epsilon`` at ``delta`` with its ``accountant``,
    ``noise_multiplier``, ``sample_rate``, ``steps`` and ``n_members`` (its training set is smaller than the
    target's, so its q and epsilon differ); None when stopped."""
    canaries = attack_lib.make_canaries(data, n_canaries, seed=seed)
    run = train(dataclasses.replace(ref_cfg, seed=int(ref_cfg.seed) + 1),
                data=_with_members(data, canaries.x_train, canaries.y_train), should_stop=should_stop)
    if run.status == "cancelled":
        return None
    scores = attack_lib.score_canaries(run.model, canaries)
    bound = attack_lib.one_run_audit_best(scores, canaries.included, delta=ref_cfg.target_delta,
                                          confidence=CONFIDENCE)
    return {**bound.to_dict(), "mode": "black-box", "canaries": n_canaries,
            "power": attack_lib.one_run_audit_power(bound, confidence=CONFIDENCE),
            "accountant_epsilon": json_number(run.final_epsilon), "delta": ref_cfg.target_delta,
            "accountant": ref_cfg.accountant if ref_cfg.private else None,
            "noise_multiplier": run.noise_multiplier, "sample_rate": run.sample_rate, "steps": run.steps,
            "n_members": len(canaries.x_train), "test_accuracy": json_number(run.test_accuracy),
            "seconds": round(run.seconds, 3), "note": CANARY_COMPARE_NOTE}


def white_box_canary_audit(data: SplitData, config: TrainConfig, summary: Mapping[str, Any], *, n_canaries: int,
                           seed: int, should_stop: Callable[[], bool] | None = None) -> dict[str, Any] | None:
    """White-box one-run audit of the schedule a run trained with: ``summary``'s noise multiplier (none without
    DP), sample rate and steps, ``config``'s model, optimizer and clipping bound, with ``n_canaries`` gradient
    canaries (at most half the model's parameters: more are cut to that). Returns the stored dict like
    ``black_box_canary_audit`` (its ``accountant_epsilon`` is the epsilon of that schedule), None when stopped."""
    sigma = summary.get("noise_multiplier") if config.private else None
    sample_rate = summary.get("sample_rate")
    steps = summary.get("steps")
    if not sample_rate or not steps:
        raise DPExplorerError("the run's summary has no sample rate or step count; train it again to audit it")
    model, _ = fresh_model(config, data)
    n_canaries = min(int(n_canaries), gradient_canaries.max_gradient_canaries(model))
    found = gradient_canaries.gradient_canary_audit(
        config, data, n_canaries=n_canaries, noise_multiplier=sigma, sample_rate=float(sample_rate),
        steps=int(steps), seed=seed, confidence=CONFIDENCE, should_stop=should_stop)
    if found is None:
        return None
    info = gradient_canaries.audit_summary(found)
    info.update(mode="white-box", accountant_epsilon=json_number(found.accountant_epsilon),
                n_members=data.n_members, note=CANARY_COMPARE_NOTE)
    return info


def _save_result(store: RunStore, run_id: str, result: dict[str, Any],
                 scores: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write attack_scores.npz, then attack.json, each atomically (a reader never sees half a file)."""
    folder = store.artifacts_dir(run_id, create=True)
    arrays = {}
    for name, (members, non_members) in scores.items():
        arrays[f"{name}__members"] = np.asarray(members, dtype=np.float64)
        arrays[f"{name}__non_members"] = np.asarray(non_members, dtype=np.float64)
    atomic_write(folder / SCORES_FILE, lambda handle: np.savez_compressed(handle, **arrays))
    atomic_write_text(folder / ATTACK_FILE, json.dumps(result, indent=1, allow_nan=False))




def summary_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """Flat numbers for the run's summary (so they show in the Runs table): ``<attack>_auc`` and
    ``<attack>_tpr_at_1pct_fpr`` per attack (hyphens become underscores; None for attacks not run),
    ``lira_auc``/``lira_tpr_at_1pct_fpr`` (online LiRA, else offline), ``empirical_epsilon_lower`` (nats,
    the largest attack-based bound), ``canary_epsilon_lower`` with ``canary_epsilon_power`` (the most that audit
    could certify), ``canary_accountant_epsilon`` (the canary run's own epsilon, what its bound is compared
    with; None without DP) and ``canary_mode``, ``attack_models`` and ``attack_run_id``.
    TPR at 1 % FPR is the raw ROC value; fewer than 1000 non-members make it rest on under 10 false positives.
    """
    fields: dict[str, Any] = {}
    ran = result.get("attacks", {})
    for name in attack_lib.ATTACKS:
        key = name.replace("-", "_")
        entry = ran.get(name)
        fields[f"{key}_auc"] = entry["auc"] if entry else None
        fields[f"{key}_tpr_at_1pct_fpr"] = entry["tpr_at_fpr_raw"]["0.01"] if entry else None
    lira = ran.get("lira-online") or ran.get("lira-offline")
    fields["lira_auc"] = lira["auc"] if lira else None
    fields["lira_tpr_at_1pct_fpr"] = lira["tpr_at_fpr_raw"]["0.01"] if lira else None
    epsilon = result.get("epsilon", {})
    canary = epsilon.get("canary")
    pool = result.get("pool")
    fields.update(
        empirical_epsilon_lower=epsilon.get("lower_bound"),
        empirical_epsilon_attack=epsilon.get("lower_bound_attack"),
        canary_epsilon_lower=canary["epsilon_lower"] if canary else None,
        canary_epsilon_power=canary.get("power") if canary else None,
        canary_accountant_epsilon=canary.get("accountant_epsilon") if canary else None,
        canary_mode=canary.get("mode", "black-box") if canary else None,
        attack_strongest=result.get("strongest_attack"),
        attack_models=pool["n_models"] if pool else 0,
        attack_run_id=result.get("attack_run_id"),
        attack_created=result.get("created"),
    )
    return fields



# ---------------------------------------------------------------------- jobs
def submit_attack(
    queue: JobQueue,
    target_run_id: str,
    *,
    attacks: Iterable[str] = DEFAULT_ATTACKS,
    n_models: int = 16,
    seed: int = 0,
    canaries: int = 0,
    canary_mode: str = DEFAULT_CANARY_MODE,
    estimate_s: float | None = None,
) -> str:
    """Queue an attack evaluation of a training run; return the id of the new run of kind 'attack'.

    The attack run's config is the target's config with the options under ``extra['attack']``, its group
    is the target's id. Options are validated here, so bad input fails before anything is queued. A
    target that is still queued or running may be attacked: the job waits for it to finish. ``estimate_s``
    (the page's estimate, seconds) is kept in the job's summary for its ETA before the first model is done.
    """
    options = AttackOptions(target_run_id, tuple(attacks), n_models, seed, canaries, canary_mode).validate()
    record = queue.store.get(target_run_id)
    if record.kind != "train":
        raise DPExplorerError(f"run {target_run_id} is a {record.kind!r} job; pick a training run to attack")
    if record.status not in (DONE, *ACTIVE_STATUSES):
        raise DPExplorerError(f"run {target_run_id} is {record.status}; only finished (or still training) runs "
                              "can be attacked")
    config = {**record.config, "extra": {"attack": options.to_dict()}}
    what = f"{options.n_models} reference models" if options.needs_pool else "no reference models"
    name = f"attack: {record.name} ({', '.join(options.attacks)}; {what})"
    job_id = queue.submit(config, kind=ATTACK_KIND, group=target_run_id, name=name, runner=attack_runner)
    if estimate_s is not None:
        queue.store.update_summary(job_id, estimate_s=round(float(estimate_s), 3))
    return job_id


def attack_runner(run_id: str, store: RunStore, should_stop: Callable[[], bool]) -> dict[str, Any] | None:
    """Job body for runs of kind 'attack': reads the options from the run's config, waits for the target
    to finish training if needed, runs ``run_attack_suite`` with progress counted in reference models, and
    copies the headline numbers into the attack run's summary."""
    record = store.get(run_id)
    try:
        options = AttackOptions.from_dict(record.config["extra"]["attack"])
    except (KeyError, TypeError, ValueError):
        raise DPExplorerError(f"run {run_id} has no attack options in its config; "
                              "submit it with submit_attack") from None
    with Heartbeat(store, run_id):  # the wait and the pool take minutes without a step: keep the run visibly alive
        return _attack_job(store, run_id, options, should_stop)


def _attack_job(store: RunStore, run_id: str, options: AttackOptions, should_stop: Callable[[], bool]
                ) -> dict[str, Any] | None:
    """``attack_runner``'s work: wait for the target, run the suite, copy the headline numbers."""
    while store.get(options.target_run_id).status in ACTIVE_STATUSES:  # queued behind its target's training
        if should_stop():
            return None
        time.sleep(0.2)

    work_started = time.time()  # the ETA's clock (views.attack_lab.job_eta): the wait above is not the job's speed

    def on_progress(done: int, total: int, phase: str) -> None:
        store.set_progress(run_id, done, max(total, 1))
        store.update_summary(run_id, phase=phase, work_started=work_started)

    result = run_attack_suite(store, options.target_run_id, attacks=options.attacks, n_models=options.n_models,
                              seed=options.seed, canaries=options.canaries, canary_mode=options.canary_mode,
                              should_stop=should_stop, on_progress=on_progress, attack_run_id=run_id)
    if result is not None:
        store.update_summary(run_id, target_run_id=options.target_run_id, phase="done", seconds=result["seconds"],
                             **{k: v for k, v in summary_fields(result).items() if v is not None})
    return result
