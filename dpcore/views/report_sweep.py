"""The HTML report of one sweep: its grid, progress, the tradeoff charts, the clipping heatmaps and every
member's numbers and checks (the page shell and shared sections are ``dpcore.views.report_html``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dpcore.jobs import sweep as sweeps
from dpcore.privacy.checks import all_passed, gate_checks
from dpcore.store.records import StoredRun
from dpcore.views import frontier as frontiers
from dpcore.views import plots
from dpcore.views.explain import SELECTION_COST
from dpcore.views.report_html import (
    Content,
    Figures,
    config_section,
    environment,
    environment_section,
    esc,
    explain_html,
    fmt,
    guidance_for,
    guidance_section,
    html_table,
    render_html,
)

if TYPE_CHECKING:
    import pandas as pd

    from dpcore.store.runs import RunStore

#: Config keys a sweep varies (or that follow from what it varies): left out of its shared configuration.
VARIED_KEYS = ("target_epsilon", "max_grad_norm", "seed", "private", "noise_multiplier", "extra")


def _chosen_on_text(row: dict[str, Any]) -> str:
    """How a frontier row's clipping bound was chosen, for the sweep report's table."""
    return {"validation": "validation accuracy", "test": "test accuracy (no validation set)",
            "single": "nothing to choose"}.get(str(row.get("chosen_on")), "-")


def _with_note(epsilon: Any, note: Any) -> str:
    """ε (three decimals) followed by its caveat note in brackets when there is one."""
    return fmt(epsilon, ".3f") + (f" ({note})" if isinstance(note, str) and note else "")


def _grid_html(spec: Any) -> str:
    """The sweep's grid (``dpcore.jobs.sweep.SweepSpec``) as a table and its one-line description."""
    base = spec.base.resolve()
    rows = [("dataset", base.dataset), ("model", base.model),
            ("target ε", ", ".join(f"{e:g}" for e in spec.epsilons) or "-"),
            ("δ", fmt(base.target_delta, "g")), ("accountant", base.accountant.upper()),
            ("clipping bounds C", ", ".join(f"{c:g}" for c in spec.max_grad_norms)),
            ("seeds", ", ".join(str(s) for s in spec.seeds)),
            ("non-private baseline", "yes (one per seed)" if spec.include_baseline else "no"),
            ("validation split", f"{spec.validation_fraction:.0%} of the members, held out of training (fixed "
                                 "slice, every run)" if spec.validation_fraction
             else "none (a sweep recorded before validation splits)"),
            ("runs", spec.n_runs)]
    return html_table(rows) + f'<p class="muted">{esc(spec.describe())}</p>'


def _frontier_html(front: pd.DataFrame) -> str:
    """The frontier table (one row per privacy setting, seeds averaged), its selection note and caveat."""
    rows = [(row["label"], _with_note(row["epsilon"], row.get("epsilon_note")), fmt(row["max_grad_norm"], "g"),
             _chosen_on_text(row), fmt(row.get("validation_accuracy"), ".1%"),
             f"{fmt(row['test_accuracy'], '.1%')} ± {fmt(row['test_accuracy_std'], '.1%')}",
             fmt(row["mia_auc"], ".3f"), fmt(row["mia_tpr_at_1pct_fpr"], ".1%"),
             fmt(row["final_clip_fraction"], ".0%"), row["n_runs"])
            for row in front.to_dict("records")]
    text = (html_table(rows, ("setting", "ε spent (mean)", "chosen C", "chosen on", "validation accuracy",
                              "test accuracy ± std", "attack AUC", "TPR at 1 % FPR", "clipped at end", "runs"),
                       align_numbers=True)
            if rows else "<p>No finished runs yet.</p>")
    selection_note = frontiers.frontier_note(front)
    if selection_note:
        text += f'<p class="warning"><strong>Note:</strong> {esc(selection_note)}</p>'
    return text + ('<p class="muted">Seeds averaged; ± is the sample standard deviation over seeds. '
                   f"{esc(SELECTION_COST)}</p>")


def _members_html(states: Sequence[Any], points: pd.DataFrame) -> tuple[str, list[Any]]:
    """The table of every member (its cell, status, numbers and checks verdict) and the guidance notes of the
    finished ones (each message once)."""
    rows = []
    by_id = {row["run_id"]: row for row in points.to_dict("records")}
    checks_failed = 0
    notes: dict[str, Any] = {}
    for member in states:
        point = by_id.get(member.run_id or "", {})
        verdict = "-"
        if member.run is not None and member.run.status == "done":
            run = StoredRun.from_record(member.run)
            checks = gate_checks(run.checks())  # the advisory clip-band check is advice, not counted
            verdict = f"{sum(c.passed is True for c in checks)}/{len(checks)} pass"
            checks_failed += not all_passed(checks)
            for note in guidance_for(run.config, run.summary):
                notes.setdefault(note.message, note)
        rows.append((member.key, member.state, _with_note(point.get("epsilon"), point.get("epsilon_note")),
                     fmt(point.get("validation_accuracy"), ".1%"), fmt(point.get("test_accuracy"), ".1%"),
                     fmt(point.get("mia_auc"), ".3f"), fmt(point.get("mia_tpr_at_1pct_fpr"), ".1%"),
                     fmt(point.get("final_clip_fraction"), ".0%"), verdict, member.run_id or "-"))
    text = html_table(rows, ("cell", "status", "ε spent", "validation accuracy", "test accuracy", "attack AUC",
                             "TPR at 1 % FPR", "clipped at end", "checks", "run id"), align_numbers=True)
    text += (f'<p class="muted">Checks are the seed\'s four (ε within budget, ε below 10, attack AUC below '
             f"0.6, accuracy above 0.55); {checks_failed} finished run(s) fail at least one. Non-private "
             "runs fail the ε checks by design.</p>")
    return text, list(notes.values())


def _tradeoff_parts(front: pd.DataFrame, points: pd.DataFrame) -> list[str | Figures]:
    """The tradeoff section: accuracy and attacks against ε, the frontier table, empirical bounds vs ε."""
    utility = plots.privacy_utility_chart(front)
    plots.add_run_points(utility, points, x="epsilon", y="test_accuracy", name="single runs", hint=None)
    plots.fit_fraction_axis(utility)
    parts: list[str | Figures] = [
        Figures([utility], "Test accuracy against ε spent (log scale), seeds averaged with ± 1 std error bars; grey "
                           "dots are single runs; the dotted line is the non-private baseline."),
        _frontier_html(front),
        Figures([plots.attack_vs_epsilon_chart(front, metric="mia_auc"),
                 plots.attack_vs_epsilon_chart(front, metric="mia_tpr_at_1pct_fpr")],
                "Loss-threshold attack on each run: AUC (0.5 = chance) and true-positive rate at a 1 % false-positive "
                "rate (chance: 1 %)."),
    ]
    bounds = frontiers.bounds_data(points)
    if not bounds.empty:
        parts.append(Figures([plots.epsilon_bounds_chart(bounds)],
                             "What the attacks demonstrate (a statistical lower bound) against what the accountant "
                             "guarantees (an upper bound); points above y = x would mean a broken guarantee."))
    return parts


def _clipping_parts(points: pd.DataFrame) -> list[str | Figures]:
    """The clipping section: accuracy and clipped-share heatmaps over (ε, C), and how to choose C."""
    parts: list[str | Figures] = []
    accuracy_cells = frontiers.heatmap_data(points)
    if not accuracy_cells.empty:
        clip_cells = frontiers.heatmap_data(points, value="final_clip_fraction")
        parts.append(Figures([
            plots.sweep_heatmap(accuracy_cells),
            plots.sweep_heatmap(clip_cells, value_title="clipped at end", colorscale="Blues", mark_best=False,
                                value_range=(0.0, 1.0), title="Share clipped at the end of training")],
            "Left: mean test accuracy for every (ε, C) pair, the C chosen per ε (best validation accuracy) "
            "outlined. Right: share of per-sample gradients clipped in the last epoch (50-80 % usually trains best)."))
    parts.append(explain_html("max_grad_norm", "clip_fraction"))
    return parts


def _devices(states: Sequence[Any]) -> str:
    """The devices the sweep's members trained on, comma-separated ('-' when none is known)."""
    devices = sorted({m.run.device for m in states if m.run is not None and m.run.device})
    return ", ".join(devices) or "-"


def sweep_report(store: RunStore, sweep_id: str) -> str:
    """The HTML report of a sweep: grid, progress, the tradeoff charts and every member's numbers and checks.

    Returns one self-contained HTML document (SweepNotFound for an unknown id).
    """
    sweep = sweeps.load_sweep(store, sweep_id)
    states = sweeps.member_states(store, sweep)
    progress = sweeps.sweep_progress(store, sweep, states=states)
    points = frontiers.run_points(sweeps.sweep_runs(store, sweep))
    front = frontiers.frontier(points)
    env = environment(device=None)
    shared = {key: value for key, value in sweep.spec.base.resolve().to_dict().items() if key not in VARIED_KEYS}
    counts = ", ".join(f"{n} {state}" for state, n in progress.counts.items() if n)
    progress_html = (f"<p><strong>{progress.done} of {progress.total} runs done</strong> "
                     f"(status: {esc(progress.status)}; {esc(counts)}).</p>")
    members_html, notes = _members_html(states, points)
    sections: list[tuple[str, Content]] = [
        ("Grid", _grid_html(sweep.spec)),
        ("Progress", progress_html),
        ("Tradeoff", _tradeoff_parts(front, points)),
        ("Clipping bound", _clipping_parts(points)),
        ("How to read this", explain_html("bands", "baseline", "auc", "lower_bound")),
        ("Runs", members_html),
        ("Guidance", guidance_section(notes)),
        ("Shared configuration", config_section(shared)),
        ("Environment", environment_section(env, trained_on=_devices(states))),
    ]
    return render_html(f"DP Explorer sweep report: {sweep.name}", sections,
                       subtitle=f"Sweep {sweep.id} · created {sweep.created} · generated {env['generated']}")


__all__ = ["sweep_report"]
