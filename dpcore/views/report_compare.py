"""The HTML report of runs side by side: what the Runs page's comparison shows (table, overlaid charts,
each run's checks), for a review. The page shell and shared sections are ``dpcore.views.report_html``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from dpcore.errors import DPExplorerError
from dpcore.store.records import StoredRun
from dpcore.views import tables as compare
from dpcore.views.report_html import (
    Content,
    Figures,
    badge,
    environment,
    environment_section,
    esc,
    explain_html,
    html_table,
    render_html,
)

if TYPE_CHECKING:
    from dpcore.store.runs import RunStore


def comparison_report(store: RunStore, run_ids: Sequence[str],
                      *, thresholds: Mapping[str, float] | None = None) -> str:
    """The HTML report of runs ``run_ids`` side by side: what the Runs page's comparison shows, for a review.

    The comparison table, the overlaid ε, clipping, accuracy and ROC charts, each run's four
    checks, and the environment. Needs two or more distinct runs (DPExplorerError otherwise;
    RunNotFound for an unknown id).
    """
    ids = list(dict.fromkeys(run_ids))
    if len(ids) < 2:
        raise DPExplorerError(f"a comparison report needs two or more runs, got {len(ids)}; "
                              "for one run, ask for its own report")
    records = [StoredRun.load(store, run_id) for run_id in ids]
    frame = compare.compare_runs(store, ids)
    data = compare.overlays(store, ids)
    table = compare.comparison_table(frame)
    env = environment(device=None)
    thresholds = dict(thresholds or {})

    table_rows = [(index, *row) for index, row in zip(table.index, table.itertuples(index=False), strict=True)]
    shared = f"Shared by all {len(ids)} runs: {', '.join(data.shared)}." if data.shared else ""
    runs_html = (html_table(table_rows, ("", *table.columns), align_numbers=True)
                 + f'<p class="muted">{esc(shared)} ε at each run\'s own δ; accuracies on held-out data; attack '
                   "AUC 0.5 = chance. A continuation counts the ε of its parent too.</p>")
    # A run without a target ε has no 'within budget' check: one column per check any run has.
    checks = {record.id: {c.name: c for c in record.checks(**thresholds)}
              for record in records}
    names = list(dict.fromkeys(name for by_name in checks.values() for name in by_name))
    check_rows = [(esc(data.labels.get(record.id, record.name)),
                   *(badge(checks[record.id][name].passed, advisory=checks[record.id][name].advisory)
                     if name in checks[record.id] else badge(None)
                     for name in names), esc(record.id)) for record in records]
    checks_html = (html_table(check_rows, ("run", *names, "run id"), raw=True)
                   + '<p class="muted">The four checks of <code>python -m dpcore check</code>; each run\'s own '
                     "report lists the measured values and thresholds. A run without DP fails the ε checks by "
                     "design: it has no guarantee. Clipping in the healthy band is advice (amber), not a gate.</p>")
    _, charts = compare.overlay_charts(frame, data)
    figures = list(charts.values())
    missing_roc = f" No attack stored for: {', '.join(data.without_roc)}." if data.without_roc else ""
    sections: list[tuple[str, Content]] = [
        ("Runs", runs_html),
        ("Training and attack", Figures(figures, "ε spent per step (runs without DP are not drawn), share of "
                                                 "per-sample gradients clipped per step, test (solid) and train "
                                                 "(dashed) accuracy per epoch, the loss-threshold attack's AUC "
                                                 "and TPR at 1 % FPR after each epoch, and each run's "
                                                 "loss-threshold attack ROC." + missing_roc)),
        ("Checks", checks_html),
        ("How to read this", explain_html("bands", "baseline", "auc", "clip_fraction")),
        ("Environment", environment_section(env, trained_on=", ".join(sorted({r.device for r in records
                                                                                  if r.device})) or None)),
    ]
    subtitle = f"Runs {', '.join(ids)} · generated {env.get('generated', '')} by DP Explorer"
    return render_html(f"DP Explorer comparison: {len(ids)} runs", sections, subtitle=subtitle)


__all__ = ["comparison_report"]
