"""Which ε is not a guarantee, and why: the caveats of a run's ε and the proven bound of the same schedule.

Three things keep a reported ε from being a guarantee: the GDP accountant (a central-limit
approximation, not an upper bound), batches drawn without Poisson sampling (every accountant
assumes it) and noise that followed the stored seed (a "reproducible" run, or a run stored
before the noise became secret). Every place that shows an ε takes its wording from here, so
the dashboard, reports, the CLI and JSON exports say the same thing.

>>> status = epsilon_status(config={"accountant": "gdp", "target_delta": 1e-5, "reproducible": False},
...                         summary={"final_epsilon": 3.0, "noise_multiplier": 1.3946, "sample_rate": 1 / 13,
...                                  "steps": 130})
>>> status.text()
'ε 3.00 (GDP approximation; RDP bound 3.77)'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError
from dpcore.jsonable import json_number
from dpcore.privacy import accounting
from dpcore.privacy.bands import format_number

GDP, NO_POISSON, REPRODUCIBLE = "gdp", "no_poisson", "reproducible"
#: Accountants whose ε is a proven upper bound (given Poisson sampling).
GUARANTEEING_ACCOUNTANTS = ("rdp", "prv")

#: One source of wording: kind -> (short label, one-sentence explanation).
CAVEAT_TEXT: dict[str, tuple[str, str]] = {
    GDP: ("GDP approximation",
          "The GDP accountant is a central-limit approximation, not an upper bound: the true ε of this "
          "schedule can be higher than it says (RDP gives a proven bound)."),
    NO_POISSON: ("assumes Poisson sampling",
                 "This run shuffled its batches instead of sampling them with Poisson sampling, but every "
                 "accountant assumes Poisson sampling: no proven bound exists for this run."),
    REPRODUCIBLE: ("reproducible — not private against anyone who knows the seed",
                   "The DP noise and the batch sampling followed the stored seed, so anyone holding the config "
                   "can regenerate the noise and remove it; the ε holds only against people who do not know "
                   "the seed."),
}
LEGACY_REPRODUCIBLE_EXPLANATION = (
    "This run was stored before the DP noise became secret: its noise and batch sampling followed its stored "
    "seed, so anyone holding the config can regenerate the noise and remove it.")
#: Compact marks for chart legends and labels, where the full label does not fit.
SHORT_MARKS: dict[str, str] = {GDP: "GDP approx.", NO_POISSON: "no Poisson, no bound", REPRODUCIBLE: "reproducible"}
NO_BOUND_TEXT = "no proven bound: the accounting assumes Poisson sampling"
REPRODUCIBLE_GATE_TEXT = CAVEAT_TEXT[REPRODUCIBLE][0]


@dataclass(frozen=True)
class Caveat:
    """Why a run's ε is not the guarantee it looks like.

    ``kind`` is ``"gdp"``, ``"no_poisson"`` or ``"reproducible"``; ``label`` is the short mark
    shown next to the number; ``explanation`` is one sentence for tooltips and reports.
    """

    kind: str
    label: str
    explanation: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class EpsilonStatus:
    """A run's reported ε, its caveats, and the proven bound of the same schedule.

    ``epsilon`` is the ε the run's own ``accountant`` reported (inf for no DP, NaN unknown).
    ``bound`` is a proven upper bound at the same δ from ``bound_accountant`` (``"rdp"`` or
    ``"prv"``): the reported ε itself when it came from a guaranteeing accountant, the RDP ε of
    the same schedule for a GDP run, and None when no bound exists (no Poisson sampling, no DP,
    or a schedule that was not stored).
    """

    private: bool
    epsilon: float
    accountant: str | None
    bound: float | None
    bound_accountant: str | None
    caveats: tuple[Caveat, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The caveat kinds, e.g. ``("gdp",)``."""
        return tuple(caveat.kind for caveat in self.caveats)

    @property
    def is_guarantee(self) -> bool:
        """True when the reported ε is itself a proven bound (reproducibility aside)."""
        return self.private and GDP not in self.kinds and NO_POISSON not in self.kinds

    @property
    def reproducible(self) -> bool:
        """True when the noise followed the seed (or the run predates secret noise)."""
        return REPRODUCIBLE in self.kinds

    @property
    def no_proven_bound(self) -> bool:
        """True for a private run whose sampling no accountant covers."""
        return self.private and NO_POISSON in self.kinds

    def bound_text(self, spec: str = ".2f") -> str:
        """'RDP bound 3.77', 'no proven bound: ...', or '' when the reported ε is the bound."""
        if not self.private:
            return ""
        if self.no_proven_bound:
            return NO_BOUND_TEXT
        if GDP in self.kinds:
            if self.bound is None:
                return "no RDP bound stored"
            return f"{(self.bound_accountant or 'rdp').upper()} bound {format_number(self.bound, spec)}"
        return ""

    def note(self, spec: str = ".2f", *, include_reproducible: bool = True) -> str:
        """The mark shown beside the ε: 'GDP approximation; RDP bound 3.77', or '' when there is nothing to say."""
        parts = []
        if GDP in self.kinds and not self.no_proven_bound:
            parts.append(CAVEAT_TEXT[GDP][0])
        if self.private and (bound := self.bound_text(spec)):
            parts.append(bound)
        if include_reproducible and self.reproducible:
            parts.append(REPRODUCIBLE_GATE_TEXT)
        return "; ".join(parts)

    def text(self, spec: str = ".2f", *, symbol: str = "ε", include_reproducible: bool = True) -> str:
        """'ε 3.00 (GDP approximation; RDP bound 3.77)'; plain 'ε 3.00' when the ε is a guarantee."""
        value = format_number(self.epsilon, spec)
        note = self.note(spec, include_reproducible=include_reproducible)
        return f"{symbol} {value} ({note})" if note else f"{symbol} {value}"

    def short_note(self, spec: str = ".2f") -> str:
        """A compact note for cards and cells: 'GDP approx.; RDP bound 3.77', 'no proven bound', 'reproducible'."""
        parts = []
        if self.no_proven_bound:
            parts.append("no proven bound")
        elif GDP in self.kinds:
            parts.append(f"{SHORT_MARKS[GDP]}; {self.bound_text(spec)}")
        if self.reproducible:
            parts.append(SHORT_MARKS[REPRODUCIBLE])
        return "; ".join(parts)

    def marked_label(self, label: str) -> str:
        """``label`` with compact caveat marks for legends: 'ε 3 (GDP approx.)'; unchanged without caveats."""
        marks = ", ".join(SHORT_MARKS[kind] for kind in self.kinds)
        return f"{label} ({marks})" if marks else label

    def explanations(self) -> list[str]:
        """One sentence per caveat, for tooltips and reports."""
        return [caveat.explanation for caveat in self.caveats]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields for run summaries and exports (``epsilon_*`` keys, ``reproducible``)."""
        return {
            "epsilon_is_guarantee": self.is_guarantee,
            "epsilon_bound": json_number(self.bound),
            "epsilon_bound_accountant": self.bound_accountant,
            "epsilon_note": self.note(".3f"),
            "epsilon_caveats": [caveat.to_dict() for caveat in self.caveats],
            "reproducible": self.reproducible,
        }


def _config_dict(config: Mapping[str, Any] | TrainConfig) -> Mapping[str, Any]:
    return config.to_dict() if isinstance(config, TrainConfig) else config


def is_reproducible(config: Mapping[str, Any] | TrainConfig) -> bool:
    """Whether the run's noise and sampling followed its seed.

    A stored config without the ``reproducible`` key was made before the noise became
    secret, when the noise always followed the seed: it counts as reproducible.
    """
    values = _config_dict(config)
    return bool(values.get("reproducible", True))


def run_caveats(*, config: Mapping[str, Any] | TrainConfig,
                summary: Mapping[str, Any] | None = None) -> list[Caveat]:
    """The caveats of a run's ε, from its config (a TrainConfig or a stored dict) and summary.

    Returns an empty list for a run whose ε is a guarantee, and for a non-private run (which
    has no ε to qualify).
    """
    values = _config_dict(config)
    summary = summary or {}
    if not bool(values.get("private", True)):
        return []
    caveats = []
    accountant = summary.get("accountant") or values.get("accountant") or "rdp"
    if accountant == GDP:
        caveats.append(Caveat(GDP, *CAVEAT_TEXT[GDP]))
    if values.get("poisson_sampling", True) is False:
        caveats.append(Caveat(NO_POISSON, *CAVEAT_TEXT[NO_POISSON]))
    if is_reproducible(values):
        explanation = CAVEAT_TEXT[REPRODUCIBLE][1] if "reproducible" in values else LEGACY_REPRODUCIBLE_EXPLANATION
        caveats.append(Caveat(REPRODUCIBLE, CAVEAT_TEXT[REPRODUCIBLE][0], explanation))
    return caveats


def stored_schedule(summary: Mapping[str, Any]) -> list[tuple[float, float, int]] | None:
    """The run's (sigma, sample_rate, steps) segments: ``accountant_history`` when stored, else one
    segment from ``noise_multiplier``, ``sample_rate`` and ``steps``; None when they are missing."""
    history = summary.get("accountant_history")
    if history:
        try:
            return [(float(s), float(q), int(n)) for s, q, n in history]
        except (TypeError, ValueError):
            return None
    sigma, rate, steps = summary.get("noise_multiplier"), summary.get("sample_rate"), summary.get("steps")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (sigma, rate, steps)):
        return None
    if not (math.isfinite(sigma) and 0 < rate <= 1):
        return None
    return [(float(sigma), float(rate), int(steps))]


@functools.lru_cache(maxsize=1024)
def _schedule_bound(schedule: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float | None:
    try:
        return accounting.schedule_epsilon(list(schedule), delta=delta, accountant=accountant)
    except ConfigError:
        return None


def guaranteed_epsilon(*, config: Mapping[str, Any] | TrainConfig, summary: Mapping[str, Any],
                       accountant: str = "rdp") -> float | None:
    """ε of the run's schedule under a guaranteeing ``accountant`` ("rdp" or "prv"), at the run's δ.

    Recomputed from the stored schedule (``stored_schedule``); RDP answers in milliseconds, PRV
    is tighter but can take seconds at large ε. Returns None for a non-private run, a run
    without Poisson sampling (no accountant covers it) or when the schedule was not stored.
    """
    if accountant not in GUARANTEEING_ACCOUNTANTS:
        raise ConfigError(f"a guaranteeing accountant is one of {', '.join(GUARANTEEING_ACCOUNTANTS)}; "
                          f"got {accountant!r}")
    values = _config_dict(config)
    if not bool(values.get("private", True)) or values.get("poisson_sampling", True) is False:
        return None
    schedule = stored_schedule(summary)
    delta = values.get("target_delta", summary.get("target_delta"))
    if schedule is None or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        return None
    return _schedule_bound(tuple(schedule), float(delta), accountant)


def epsilon_status(*, config: Mapping[str, Any] | TrainConfig, summary: Mapping[str, Any] | None = None,
                   epsilon: float | None = None, bound_accountant: str = "rdp") -> EpsilonStatus:
    """The reported ε of a run (``epsilon`` overrides the summary's, e.g. the live value of an
    active run), its caveats and the proven bound of the same schedule.

    A run accounted with RDP or PRV is its own bound; a GDP run gets the ``bound_accountant``
    ε of its stored schedule; a run without Poisson sampling has no bound.
    """
    values = _config_dict(config)
    summary = summary or {}
    private = bool(values.get("private", True))
    if epsilon is None:
        stored = summary.get("final_epsilon")
        epsilon = float(stored) if isinstance(stored, (int, float)) else math.nan
    if not private:
        return EpsilonStatus(False, math.inf, None, None, None, ())
    caveats = tuple(run_caveats(config=values, summary=summary))
    accountant = summary.get("accountant") or values.get("accountant") or "rdp"
    kinds = {caveat.kind for caveat in caveats}
    bound: float | None
    if NO_POISSON in kinds:
        bound, used = None, None
    elif accountant in GUARANTEEING_ACCOUNTANTS:
        bound, used = (epsilon if math.isfinite(epsilon) else None), accountant
    else:
        bound, used = guaranteed_epsilon(config=values, summary=summary, accountant=bound_accountant), bound_accountant
        if bound is None:
            used = None
    return EpsilonStatus(True, float(epsilon), accountant, bound, used, caveats)


def row_status(row: Mapping[str, Any]) -> EpsilonStatus:
    """``epsilon_status`` of one row of ``RunStore.list_runs`` (config and summary fields flattened;
    a missing or NaN ``reproducible`` cell is a run stored before the noise became secret)."""
    def cell(key: str) -> Any:
        value = row.get(key)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    config: dict[str, Any] = {"private": True if cell("private") is None else bool(cell("private")),
                              "accountant": cell("accountant") or "rdp",
                              "poisson_sampling": True if cell("poisson_sampling") is None
                              else bool(cell("poisson_sampling")),
                              "target_delta": cell("target_delta")}
    if cell("reproducible") is not None:
        config["reproducible"] = bool(cell("reproducible"))
    summary = {key: cell(key) for key in ("final_epsilon", "noise_multiplier", "sample_rate", "steps", "accountant")}
    return epsilon_status(config=config, summary={k: v for k, v in summary.items() if v is not None})


def planned_caveats(cfg: TrainConfig) -> list[Caveat]:
    """The caveats a run of ``cfg`` will carry, before it is trained (for the train page and the CLI)."""
    return run_caveats(config=cfg.to_dict(), summary={"accountant": cfg.accountant})


def caveat_labels(caveats: Sequence[Caveat]) -> str:
    """Short labels joined for a table cell: 'GDP approximation; assumes Poisson sampling'."""
    return "; ".join(caveat.label for caveat in caveats)


__all__ = [
    "CAVEAT_TEXT",
    "GDP",
    "GUARANTEEING_ACCOUNTANTS",
    "NO_BOUND_TEXT",
    "NO_POISSON",
    "REPRODUCIBLE",
    "REPRODUCIBLE_GATE_TEXT",
    "SHORT_MARKS",
    "Caveat",
    "EpsilonStatus",
    "caveat_labels",
    "epsilon_status",
    "guaranteed_epsilon",
    "is_reproducible",
    "planned_caveats",
    "row_status",
    "run_caveats",
    "stored_schedule",
]
