"""Reading a stored attack result back: the tables, curves and sentences the attack lab, the CLI and reports show.

``run_attack_suite`` (``dpcore.jobs.attack``) writes ``attack.json`` and ``attack_scores.npz`` into
the target run's artifacts; ``load_attack_result`` / ``load_attack_scores`` read them, and
``roc_curves``, ``tpr_table``, ``epsilon_table``, ``upper_bound``, ``canary_sentence``,
``vulnerable_members`` and ``attack_history`` turn them into what is displayed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from dpcore import attacks as attack_lib
from dpcore.engine.data import SplitData, preview_images, preview_table
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs.attack import ATTACK_FILE, ATTACK_KIND, SCORES_FILE
from dpcore.privacy.caveats import NO_BOUND_TEXT
from dpcore.store.runs import RunStore


def load_attack_result(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The stored attack result of a run (the dict ``run_attack_suite`` returned), or None if never attacked."""
    path = store.artifacts_path(run_id) / ATTACK_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DPExplorerError(f"the attack result of run {run_id} ({path}) cannot be read ({exc}); run the "
                              "attack again") from None


def load_attack_scores(store: RunStore, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-example attack scores of a run: ``{attack: (member_scores, non_member_scores)}`` ({} if none)."""
    path = store.artifacts_path(run_id) / SCORES_FILE
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        names = sorted({key.rsplit("__", 1)[0] for key in stored.files})
        return {name: (stored[f"{name}__members"], stored[f"{name}__non_members"]) for name in names}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _entries(result: Mapping[str, Any], evaluation: str) -> dict[str, Any]:
    if evaluation not in ("target", "pool"):
        raise ConfigError(f"evaluation must be 'target' or 'pool', got {evaluation!r}")
    return dict(result.get("attacks" if evaluation == "target" else "pool_evaluation") or {})


def roc_curves(result: Mapping[str, Any], *, evaluation: str = "target") -> list[tuple[str, list, list, float]]:
    """``(title, fpr, tpr, auc)`` per attack, ready for ``plots.roc_chart``."""
    return [(entry.get("title", name), entry["roc"]["fpr"], entry["roc"]["tpr"], entry["auc"])
            for name, entry in _entries(result, evaluation).items() if "roc" in entry]


def tpr_table(result: Mapping[str, Any], *, evaluation: str = "target") -> pd.DataFrame:
    """One row per attack: AUC with its bootstrap interval, TPR at 10 %, 1 % and 0.1 % FPR with
    Clopper-Pearson intervals, and (target evaluation) the attack's epsilon lower bound. Display strings.

    An FPR that needs more non-members than there are (at least 10 / FPR) shows the raw ROC value marked
    '≈ ... (few non-members)' rather than an interval. 'n in / out' counts the members and non-members.
    """
    rows = []
    for name, entry in _entries(result, evaluation).items():
        row: dict[str, Any] = {"attack": entry.get("title", name)}
        if "error" in entry:
            row["AUC"] = f"not run: {entry['error']}"
            rows.append(row)
            continue
        low, high = entry.get("auc_ci") or (None, None)
        row["AUC"] = f"{entry['auc']:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")
        for point in entry["operating_points"]:
            label = f"TPR @ {100 * point['target_fpr']:g} % FPR"
            if point["resolvable"]:
                row[label] = f"{_percent(point['tpr'])} [{_percent(point['tpr_low'])}, {_percent(point['tpr_high'])}]"
            else:
                raw = entry.get("tpr_at_fpr_raw", {}).get(f"{point['target_fpr']:g}")
                row[label] = f"≈ {_percent(raw)} (few non-members)"
        if "epsilon_bound" in entry:
            row["ε lower bound"] = f"{entry['epsilon_bound']['epsilon_lower']:.2f}"
        row["n in / out"] = f"{entry['n_members']} / {entry['n_non_members']}"
        rows.append(row)
    return pd.DataFrame(rows)


def upper_bound(result: Mapping[str, Any]) -> float | None:
    """The proven upper bound on the target's ε (nats, at its δ) that the lower bounds are compared with, or
    None when there is none: no DP, no Poisson sampling, or a GDP run attacked before results stored the
    bound (GDP's ε is an approximation, not a bound: run the attack again). For a GDP run it is the RDP ε
    of the same schedule."""
    epsilon, target = result.get("epsilon", {}), result.get("target", {})
    if "bound_accountant" not in epsilon and target.get("accountant") == "gdp":
        return None
    value = epsilon.get("accountant")
    return float(value) if value is not None else None


def _upper_detail(result: Mapping[str, Any], bound: float | None) -> str:
    """The hover sentence of the upper-bound row of ``epsilon_table``."""
    epsilon, target = result.get("epsilon", {}), result.get("target", {})
    accountant = target.get("accountant")
    if not target.get("private", True) or (bound is None and accountant is None):
        return "no upper bound: trained without differential privacy"
    if bound is None:
        if accountant == "gdp":
            return ("no proven bound stored: GDP's ε is an approximation, not an upper bound; run the attack again "
                    "to compare with the proven (RDP) bound of this run's schedule")
        return NO_BOUND_TEXT
    used = epsilon.get("bound_accountant") or accountant
    text = f"ε ≤ {bound:.2f} at δ = {target.get('target_delta'):g} ({used})"
    reported = epsilon.get("reported")
    if used != accountant and reported is not None:
        text += f"; the run's own {accountant} ε {reported:.2f} is an approximation, not a bound"
    return text


def epsilon_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """Rows for ``plots.epsilon_audit_chart``: the proven upper bound on the run's ε (``upper_bound``: the
    accountant's ε, or for a GDP run the RDP ε of its schedule; NaN without one) and each lower bound (per
    attack, and the canary audit when run). Columns: label, kind ('upper' or 'lower'), epsilon (nats), detail
    (a sentence for the hover), and for the canary audit's row ``compare_epsilon`` (its own run's accountant
    epsilon, the one its bound must be compared with; NaN elsewhere and without DP) and ``power`` (nats, the
    most that audit could certify; NaN elsewhere)."""
    epsilon = result.get("epsilon", {})
    bound = upper_bound(result)
    rows = [{
        "label": "this run's accountant (guarantee)", "kind": "upper",
        "epsilon": bound if bound is not None else math.nan, "detail": _upper_detail(result, bound),
    }]
    for name, entry in result.get("attacks", {}).items():
        bound = entry.get("epsilon_bound")
        if bound is None:
            continue
        rows.append({"label": f"{entry.get('title', name)} attack", "kind": "lower",
                     "epsilon": float(bound["epsilon_lower"]),
                     "detail": f"ε ≥ {bound['epsilon_lower']:.2f} with {100 * (1 - bound['alpha']):.1f} % confidence "
                               f"(threshold attack on this run's members and non-members)"})
    canary = epsilon.get("canary")
    if canary:
        own = canary.get("accountant_epsilon")
        power = canary.get("power")
        rows.append({"label": f"canary audit ({canary.get('mode', 'black-box')})", "kind": "lower",
                     "epsilon": float(canary["epsilon_lower"]), "detail": canary_sentence(canary),
                     "compare_epsilon": float(own) if own is not None else math.nan,
                     "power": float(power) if power is not None else math.nan})
    return pd.DataFrame(rows, columns=["label", "kind", "epsilon", "detail", "compare_epsilon", "power"])


def canary_sentence(canary: Mapping[str, Any]) -> str:
    """One sentence on a stored canary audit: its bound and confidence, the guesses it rests on, its power, and
    the canary run's own epsilon (delta, accountant) that the bound must be compared with."""
    counts = canary.get("counts", {})
    mode = canary.get("mode", "black-box")
    own = canary.get("accountant_epsilon")
    power = canary.get("power")
    delta = canary.get("delta")
    text = (f"{mode} canary audit: ε ≥ {canary['epsilon_lower']:.2f} with {100 * (1 - canary['alpha']):.0f} % "
            f"confidence ({counts.get('correct')} of {counts.get('guesses')} guesses right on {canary['canaries']} "
            "canaries)")
    if power is not None:
        text += f"; power {power:.2f} (the most {counts.get('power_guesses', counts.get('guesses'))} right guesses " \
                "could certify)"
    if own is not None:
        detail = ", ".join(part for part in (f"δ = {delta:g}" if delta else "", canary.get("accountant") or "") if part)
        text += f". Compare with the canary run's own ε = {own:.2f}" + (f" ({detail})" if detail else "") + \
            ", not the target's ε"
    else:
        text += ". The canary run has no DP, so no ε to compare with"
    return text + "."


def vulnerable_members(result: Mapping[str, Any], data: SplitData, *, attack: str | None = None,
                       k: int | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The members an attack is most sure about, highest score first.

    Returns ``(table, images)``: the table has rank, member index (row of ``data.x_members``), label and
    score, plus the original feature values for tabular data; ``images`` is uint8 (k, H, W, C) for image
    data (standardisation undone), else None. ``attack`` defaults to the strongest attack.
    """
    attack = attack or result.get("strongest_attack")
    entries = result.get("attacks", {})
    if attack not in entries:
        raise ConfigError(f"no stored result for attack {attack!r}; stored: {', '.join(entries)}")
    top = entries[attack]["top_members"][: k or None]
    index = np.array([item["index"] for item in top], dtype=np.int64)
    if len(index) and index.max() >= data.n_members:
        raise DPExplorerError("the stored attack result does not match this dataset (member index out of range); "
                              "run the attack again")
    rows = torch.from_numpy(index)
    subset = dataclasses.replace(data, x_members=data.x_members[rows], y_members=data.y_members[rows],
                                 raw=data.raw.iloc[index].reset_index(drop=True) if data.raw is not None else None)
    table = pd.DataFrame({
        "rank": np.arange(1, len(index) + 1),
        "member index": index,
        "label": [data.info.class_names[int(c)] for c in subset.y_members],
        "score": [item["score"] for item in top],
    })
    if data.info.kind == "image":
        return table, preview_images(subset, n=len(index))
    features = preview_table(subset, n=len(index)).drop(columns=["label"])
    return pd.concat([table, features], axis=1), None


HISTORY_COLUMNS = ["finished", "status", "attacks", "reference models", "canaries", "seed", "best AUC",
                   "strongest attack", "ε lower bound", "canary ε lower bound", "canary power",
                   "canary run's ε", "seconds", "job id"]


def attack_history(store: RunStore, run_id: str) -> pd.DataFrame:
    """Every attack-lab job on run ``run_id``, newest first: options, outcome and headline numbers.

    The attack page shows the newest result in full; this table keeps the earlier ones in view
    (e.g. a quick pool against a thorough one). Numbers come from each job's summary, so a
    cancelled or failed job has none. Columns: ``HISTORY_COLUMNS``.
    """
    rows = []
    for job in store.records(kind=ATTACK_KIND, group=run_id):
        options = (job.config.get("extra") or {}).get("attack") or {}
        summary = job.summary
        aucs = {name: summary.get(f"{name.replace('-', '_')}_auc") for name in attack_lib.ATTACKS}
        aucs = {name: value for name, value in aucs.items() if isinstance(value, (int, float))}
        strongest = max(aucs, key=aucs.get) if aucs else None
        rows.append({
            "finished": job.finished or job.created,
            "status": job.status,
            "attacks": ", ".join(attack_lib.ATTACKS[name].title if name in attack_lib.ATTACKS else name
                                 for name in options.get("attacks", [])),
            "reference models": options.get("n_models"),
            "canaries": (f"{int(options.get('canaries') or 0)} {options.get('canary_mode', 'black-box')}"
                         if options.get("canaries") else "0"),
            "seed": options.get("seed"),
            "best AUC": aucs[strongest] if strongest else None,
            "strongest attack": attack_lib.ATTACKS[strongest].title if strongest else None,
            "ε lower bound": summary.get("empirical_epsilon_lower"),
            "canary ε lower bound": summary.get("canary_epsilon_lower"),
            "canary power": summary.get("canary_epsilon_power"),
            "canary run's ε": summary.get("canary_accountant_epsilon"),
            "seconds": summary.get("seconds"),
            "job id": job.id,
        })
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


__all__ = [
    "HISTORY_COLUMNS",
    "attack_history",
    "canary_sentence",
    "epsilon_table",
    "load_attack_result",
    "load_attack_scores",
    "roc_curves",
    "tpr_table",
    "upper_bound",
    "vulnerable_members",
]
