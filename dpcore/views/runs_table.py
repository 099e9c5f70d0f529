"""The Runs page's table, filters, captions and texts (no Streamlit): what ``pages/runs.py`` draws.

The numbers come from ``dpcore.views.tables`` (``runs_overview``, ``compare_runs``, overlays); this
module decides which columns the table shows and how, what the filters offer and the sentences
around them. ε at each run's δ (inf without DP); accuracies in percent in the table.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from dpcore.store.records import StoredRun
from dpcore.store.runs import ACTIVE_STATUSES
from dpcore.views.tables import MODE_LABELS

#: every column the table can show, in display order
TABLE_COLUMNS = ["name", "status_label", "dataset", "model", "privacy", "epsilon_shown", "epsilon_note", "accuracy_pct",
                 "mia_auc", "lira_auc", "empirical_epsilon_lower", "created_at"]
#: the columns that matter, shown by default (they fit at 1400 px); the rest are picked with ``extra_columns``
DEFAULT_COLUMNS = ("name", "status_label", "epsilon_shown", "accuracy_pct", "mia_auc", "created_at")
EXTRA_COLUMNS = [column for column in TABLE_COLUMNS if column not in DEFAULT_COLUMNS]
STATUS_ORDER = ("queued", "running", "done", "cancelled", "failed", "interrupted")
FILTER_DEFAULTS: dict[str, Any] = {"text": "", "datasets": [], "statuses": [], "modes": []}
ROW_PX = 35  # st.dataframe row height, to size tables that should not scroll
INTRO = ("Every training run stored in this runs directory. Tick runs in the table to compare them side by side or "
         "to open, continue, download or delete one. Click a column header to sort. The address bar keeps the runs "
         "you tick: copy it to share this comparison.")
EMPTY = ("Train a model on the **Train** page. Every run lands here with the privacy it spent (ε), its accuracy and "
         "how well a membership attack does against it, ready to compare side by side, continue, download or delete.")
HELP = {
    "text": "Shows runs whose name or id contains every word you type.",
    "statuses": "done: trained to the end or stopped at the ε limit; interrupted: the app stopped while it ran.",
    "modes": "target ε: noise calibrated to reach a target ε; fixed σ: noise multiplier set by hand; no DP: the "
             "non-private baseline.",
    "columns": "The table shows name, status, ε, accuracy, attack AUC and creation time; add the others here.",
    "report": "This comparison in one HTML file that opens offline: the table, the four charts and every run's "
              "checks, for a review.",
    "downloads": "Metrics as CSV (one row per optimizer step or per epoch; ε at the run's δ, fractions 0-1) and the "
                 "summary as JSON (config, results, attack, checks). The HTML report is in the run's view below.",
}
#: table column -> (kind, title, options for the column type: format, width, help); the page turns it into column_config
COLUMNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "name": ("text", "Run", {"width": 280, "help": "Continuations end in (+N epochs). Runs with the same name get "
                                                  "their creation time (UTC) added, and a short id if that repeats."}),
    "dataset": ("text", "Dataset", {}),
    "model": ("text", "Model", {}),
    "privacy": ("text", "Privacy", {
        "help": "target ε: noise calibrated to reach that ε; fixed σ: noise multiplier set by hand; no DP: the "
                "non-private baseline, with no guarantee (ε = ∞)."}),
    "epsilon_shown": ("number", "ε spent", {
        "format": "%.2f", "help": "Privacy spent, at the run's δ: smaller is more private. Latest value while a run "
                                  "trains; empty for runs without DP (ε = ∞)."}),
    "epsilon_note": ("text", "ε caveat", {
        "help": "Why this ε is not a guarantee, with the proven (RDP) bound of the same schedule: GDP is an "
                "approximation, runs without Poisson sampling have no proven bound, and reproducible runs are not "
                "private against anyone who knows the seed. Empty: the ε is a proven bound."}),
    "accuracy_pct": ("number", "Test accuracy", {
        "format": "%.1f %%", "help": "Accuracy on held-out examples the model never trained on, after the last epoch "
                                     "(latest epoch while training)."}),
    "mia_auc": ("number", "Attack AUC", {
        "format": "%.3f", "help": "Loss-threshold membership attack: 0.5 means the attacker does no better than a "
                                  "coin flip, 1.0 that it tells members apart perfectly."}),
    "lira_auc": ("number", "LiRA AUC", {
        "format": "%.3f", "help": "Attack lab: LiRA with reference models, a much stronger attack. Empty until the run "
                                  "was attacked on the Attack lab page."}),
    "empirical_epsilon_lower": ("number", "ε lower bound", {
        "format": "%.2f", "help": "Attack lab: the ε an attack demonstrates with 95 % confidence. A lower bound: only "
                                  "the accountant's ε covers every attack."}),
    "status_label": ("text", "Status", {"width": 120, "help": "running N %: share of optimizer steps done."}),
    "created_at": ("datetime", "Created", {"format": "distance", "help": "When the run was submitted."}),
}
COMPARISON_CAPTIONS = {
    "eps": "Privacy spent after each optimizer step (lower is more private). Runs without DP are named under the "
           "title, not drawn.",
    "clip": "Share of per-sample gradients clipped to the bound C in each step; 50-80 % usually trains best.",
    "acc": "Test accuracy (solid) and train accuracy (dashed) per epoch. A wide gap means the model memorises its "
           "training data.",
    "vuln": "The loss-threshold attack's AUC (top; 0.5 = chance) and TPR at 1 % FPR (bottom; 1 % = chance) after "
            "each epoch: rising lines mean the model memorises its training examples; DP caps how far they rise.",
    "roc": "Membership-inference ROC of each run's loss-threshold attack (AUC in the table above): the closer to the "
           "dotted diagonal (chance), the less the model gives away.",
}
EXPLAINED_TOPICS = ("epsilon", "clip_fraction", "auc")


def filter_options(overview: pd.DataFrame) -> dict[str, list[str]]:
    """What each multiselect filter offers: the datasets, statuses and privacy modes present in ``overview``."""
    return {"datasets": sorted(overview["dataset"].dropna().unique().tolist()),
            "statuses": [status for status in STATUS_ORDER if status in set(overview["status"])],
            "modes": [mode for mode in MODE_LABELS if mode in set(overview["mode"].dropna())]}


def table_frame(shown: pd.DataFrame) -> pd.DataFrame:
    """``shown`` with the table's derived columns: accuracy in percent, ε without infinity (the grid cannot print ∞:
    no-DP runs show '–' there and 'no DP (ε = ∞)' under Privacy), and ``name`` made unique (``display_names``)."""
    named = {"name": display_names(shown)} if "name" in shown else {}
    return shown.assign(accuracy_pct=shown["accuracy"] * 100, **named,
                        epsilon_shown=shown["epsilon"].where(shown["epsilon"].abs() < math.inf))


def display_names(shown: pd.DataFrame) -> list[str]:
    """Each row's run name as the table shows it (the stored names are unchanged).

    Where names repeat (re-runs of the same settings), the creation time is added, 'name · 2026-12-01 23:48'
    (UTC), and where that still repeats, the id's last 6 characters as well.
    """
    names = [str(name) for name in shown["name"]]
    created = pd.to_datetime(shown["created_at"], utc=True, errors="coerce") if "created_at" in shown else None
    labels = []
    for row, name in enumerate(names):
        when = created.iloc[row] if created is not None else pd.NaT
        labels.append(name if names.count(name) == 1 else
                      f"{name} · {when:%Y-%m-%d %H:%M}" if not pd.isna(when) else name)
    ids = [str(run_id) for run_id in (shown["id"] if "id" in shown else shown.index)]
    return [label if labels.count(label) == 1 or names.count(names[row]) == 1 else f"{label} · {ids[row][-6:]}"
            for row, label in enumerate(labels)]


def table_columns(extra: Sequence[str]) -> list[str]:
    """The table's columns in display order: ``DEFAULT_COLUMNS`` plus the chosen ``extra`` ones (unknown names
    are ignored)."""
    wanted = set(DEFAULT_COLUMNS) | set(extra)
    return [column for column in TABLE_COLUMNS if column in wanted]


def column_title(column: str) -> str:
    """The column's title in the table (for the column picker)."""
    return COLUMNS[column][1]


def table_key(ids: Sequence[str]) -> str:
    """The runs table's widget key for these rows: selections are row positions, so a new key whenever the rows
    change (the page seeds it with the runs ticked before)."""
    return "runs-table-" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]


def linked_runs(link: str | None, *, shown: Sequence[str], stored: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runs a shared link ``?run=<id>[,<id>...]`` opens: ``(shown ids in link order, ids not stored at all)``.

    Ids that are stored but hidden by the filters are in neither list.
    """
    wanted = list(dict.fromkeys(run_id for run_id in (link or "").split(",") if run_id))
    return [run_id for run_id in wanted if run_id in shown], [run_id for run_id in wanted if run_id not in stored]


def unknown_runs_text(unknown: Sequence[str]) -> str:
    """The message for link run ids that are not in this runs directory."""
    return (f"Not in this runs directory (deleted, or a link from another machine?): {', '.join(unknown)}. "
            "The other runs of the link are shown.")


def count_caption(shown: pd.DataFrame, *, total: int, selected: int, refresh_s: float) -> str:
    """'3 of 5 runs · 1 active, refreshing every 2 s · 2 selected'."""
    text = f"{len(shown)} of {total} runs" if len(shown) != total else f"{total} run{'s' if total != 1 else ''}"
    active = int(shown["status"].isin(ACTIVE_STATUSES).sum())
    return (text + (f" · {active} active, refreshing every {refresh_s:g} s" if active else "")
            + (f" · {selected} selected" if selected else ""))


def comparison_caption(shared: Sequence[str], count: int) -> str:
    """The caption under the comparison table: what all runs share, and how to read the numbers."""
    prefix = f"All {count} runs: {', '.join(shared)}. " if shared else ""
    return prefix + ("ε at each run's own δ; accuracies on held-out data; attack AUC 0.5 = chance. A continuation "
                     "counts the ε of its parent too: privacy spent only grows.")


def chart_captions(without_roc: Sequence[str]) -> dict[str, str]:
    """The caption of each comparison chart, by overlay key ('eps', 'clip', 'acc', 'vuln', 'roc')."""
    captions = dict(COMPARISON_CAPTIONS)
    if without_roc:
        captions["roc"] += f" No attack stored for: {', '.join(without_roc)}."
    return captions


def colour_key(colors: Mapping[str, str]) -> str:
    """HTML: a short coloured line and the label of each run, on one wrapping line (one key for all four charts)."""
    items = [f'<span style="white-space:nowrap;margin-right:1.4rem"><span style="display:inline-block;width:18px;'
             f'height:3px;background:{color};vertical-align:middle;margin-right:0.4rem"></span>{html.escape(label)}'
             "</span>" for label, color in colors.items()]
    return f'<div style="line-height:2">{"".join(items)}</div>'


def delete_text(run: StoredRun, *, continuations: int) -> str:
    """Markdown: what deleting ``run`` removes, and what its continuations keep."""
    return (f"Delete **{run.name}** with its metrics, model, artifacts and attack results. This cannot be undone."
            + (f" Its {continuations} continuation(s) keep their own copy of its history." if continuations else ""))
