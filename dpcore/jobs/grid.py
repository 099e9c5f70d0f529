"""The grid of a sweep: a ``SweepSpec`` (target epsilon x clipping bound x seed) and the configs it expands into.

``expand`` turns a spec into one ``SweepMember`` (a ``TrainConfig`` and its ``cell_key``) per grid
cell, plus one non-private baseline per seed. ``dpcore.jobs.sweep`` records and runs them.

>>> spec = SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 4.0),
...                  max_grad_norms=(0.5, 1.0), seeds=(0, 1))
>>> len(expand(spec)), spec.n_runs
(10, 10)
>>> sorted({m.key for m in expand(spec)})[:3]
['baseline|seed=0', 'baseline|seed=1', 'eps=1|C=0.5|seed=0']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError

DEFAULT_EPSILONS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_MAX_GRAD_NORMS: tuple[float, ...] = (1.0,)
#: Share of the members every run of a new sweep (baseline included) holds out as its validation set:
#: the frontier chooses C on it, so no choice looks at the non-members (test set, attack negatives).
DEFAULT_VALIDATION_FRACTION = 0.1
#: Sweeps this large get a warning in the dashboard; larger than MAX_SWEEP_RUNS is refused.
LARGE_SWEEP_RUNS = 30
MAX_SWEEP_RUNS = 500


def _floats(name: str, values: Iterable[Any], *, allow_empty: bool = False) -> tuple[float, ...]:
    try:
        items = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be numbers, got {values!r}") from err
    if not items and not allow_empty:
        raise ConfigError(f"{name} needs at least one value; e.g. {name}=(1.0,)")
    for value in items:
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"every value in {name} must be a finite number > 0, got {value!r}")
    return tuple(sorted(set(items)))


def _ints(name: str, values: Iterable[Any]) -> tuple[int, ...]:
    items = list(values)
    if not items:
        raise ConfigError(f"{name} needs at least one value; e.g. {name}=(0,)")
    for value in items:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
            raise ConfigError(f"every value in {name} must be a whole number in [0, 2^32), got {value!r}")
    return tuple(sorted(set(items)))


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs on one dataset and model.

    ``base`` holds every knob the members share (dataset, model, epochs, batch size, lr,
    delta, accountant, ...); its ``target_epsilon``, ``max_grad_norm`` and ``seed`` are
    replaced by the grid values. ``epsilons`` are target epsilons (at ``base.target_delta``),
    ``max_grad_norms`` clipping bounds C, ``seeds`` training seeds (several give error bars).
    ``include_baseline`` adds one non-private run per seed (clipping does not apply to it).
    ``validation_fraction`` replaces ``base.validation_fraction`` for every member and the baseline
    alike: the share of members held out of training to choose on (see ``frontier``). A stored
    sweep without it (made before validation sets) reads as 0: its runs have none.
    """

    base: TrainConfig = field(default_factory=lambda: TrainConfig(dataset="synthetic"))
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS
    max_grad_norms: tuple[float, ...] = DEFAULT_MAX_GRAD_NORMS
    seeds: tuple[int, ...] = (0,)
    include_baseline: bool = True
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION

    def normalized(self) -> SweepSpec:
        """A copy with sorted, de-duplicated grids; ConfigError for empty grids or bad values."""
        if not isinstance(self.base, TrainConfig):
            raise ConfigError(f"base must be a TrainConfig, got {type(self.base).__name__}")
        if self.base.noise_multiplier is not None:
            raise ConfigError(
                f"a sweep calibrates the noise to each target epsilon; remove noise_multiplier "
                f"({self.base.noise_multiplier}) from the base config"
            )
        base = self.base.replace(private=True, target_epsilon=None, noise_multiplier=None, seed=0,
                                 validation_fraction=self.validation_fraction)
        return SweepSpec(base=base, epsilons=_floats("epsilons", self.epsilons, allow_empty=True),
                         max_grad_norms=_floats("max_grad_norms", self.max_grad_norms),
                         seeds=_ints("seeds", self.seeds), include_baseline=bool(self.include_baseline),
                         validation_fraction=self.validation_fraction)

    @property
    def n_runs(self) -> int:
        """How many runs the grid holds (baseline runs included)."""
        spec = self.normalized()
        private = len(spec.epsilons) * len(spec.max_grad_norms) * len(spec.seeds)
        return private + (len(spec.seeds) if spec.include_baseline else 0)

    def validate(self) -> SweepSpec:
        """The normalized spec after checking every member config; ConfigError on the first bad one."""
        spec = self.normalized()
        if not spec.epsilons and not spec.include_baseline:
            raise ConfigError("the sweep has no runs: give at least one epsilon or include the baseline")
        if spec.n_runs > MAX_SWEEP_RUNS:
            raise ConfigError(
                f"the sweep has {spec.n_runs} runs, more than the {MAX_SWEEP_RUNS} allowed; "
                "use fewer epsilons, clipping bounds or seeds"
            )
        for member in expand(spec):
            member.config.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``base`` as ``TrainConfig.to_dict()``)."""
        return {"base": self.base.to_dict(), "epsilons": list(self.epsilons),
                "max_grad_norms": list(self.max_grad_norms), "seeds": list(self.seeds),
                "include_baseline": self.include_baseline, "validation_fraction": self.validation_fraction}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSpec:
        """Inverse of ``to_dict``; ConfigError for unknown keys. No ``validation_fraction``: an old record, 0."""
        known = {"base", "epsilons", "max_grad_norms", "seeds", "include_baseline", "validation_fraction"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown sweep field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        base = values.get("base", {})
        return cls(base=base if isinstance(base, TrainConfig) else TrainConfig.from_dict(dict(base)),
                   epsilons=tuple(values.get("epsilons", DEFAULT_EPSILONS)),
                   max_grad_norms=tuple(values.get("max_grad_norms", DEFAULT_MAX_GRAD_NORMS)),
                   seeds=tuple(values.get("seeds", (0,))), include_baseline=values.get("include_baseline", True),
                   validation_fraction=values.get("validation_fraction", 0.0))

    def describe(self) -> str:
        """One line, e.g. 'synthetic mlp: ε 0.5, 1, 2 x C 1 x 2 seeds + no-DP baseline (8 runs)'."""
        spec = self.normalized()
        base = spec.base.resolve()
        eps = ", ".join(f"{e:g}" for e in spec.epsilons) or "-"
        clips = ", ".join(f"{c:g}" for c in spec.max_grad_norms)
        seeds = f"{len(spec.seeds)} seed{'s' if len(spec.seeds) != 1 else ''}"
        baseline = " + no-DP baseline" if spec.include_baseline else ""
        return f"{base.dataset} {base.model}: ε {eps} x C {clips} x {seeds}{baseline} ({spec.n_runs} runs)"


@dataclass(frozen=True)
class SweepMember:
    """One grid cell: its ``key`` (see ``cell_key``) and the config that trains it."""

    key: str
    config: TrainConfig


def cell_key(config: TrainConfig | dict[str, Any]) -> str:
    """The grid cell a config belongs to: 'eps=1|C=0.5|seed=0', or 'baseline|seed=0' for no DP.

    Computed from the config alone, so a stored run is matched to its cell without
    bookkeeping that could go stale.
    """
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    seed = values.get("seed")
    if not values.get("private", True):
        return f"baseline|seed={seed}"
    eps = values.get("target_epsilon")
    clip = values.get("max_grad_norm")
    return f"eps={_num(eps)}|C={_num(clip)}|seed={seed}"


def _num(value: Any) -> str:
    return "none" if value is None else f"{float(value):g}"


def expand(spec: SweepSpec) -> list[SweepMember]:
    """One member per (epsilon, max_grad_norm, seed), then one baseline per seed; in that order."""
    spec = spec.normalized()
    members = []
    for eps in spec.epsilons:
        for clip in spec.max_grad_norms:
            for seed in spec.seeds:
                cfg = spec.base.replace(private=True, target_epsilon=eps, max_grad_norm=clip, seed=seed)
                members.append(SweepMember(cell_key(cfg), cfg))
    if spec.include_baseline:
        for seed in spec.seeds:
            cfg = spec.base.replace(private=False, target_epsilon=None, epsilon_limit=None, seed=seed)
            members.append(SweepMember(cell_key(cfg), cfg))
    return members


__all__ = [
    "DEFAULT_EPSILONS",
    "DEFAULT_MAX_GRAD_NORMS",
    "DEFAULT_VALIDATION_FRACTION",
    "LARGE_SWEEP_RUNS",
    "MAX_SWEEP_RUNS",
    "SweepMember",
    "SweepSpec",
    "cell_key",
    "expand",
]
