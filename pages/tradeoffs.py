"""Tradeoffs page: sweeps over target epsilon x clipping bound x seed, and the privacy/utility frontier they trace.

Start a sweep (a grid of queued training runs), follow its progress, and read the tradeoff:
accuracy against epsilon with the non-private line, attack success against epsilon, empirical
lower bounds against the accountant's epsilon, and which clipping bound works best per epsilon.
Clicking a point opens that run. The sweep and the selected run live in the URL
(``?sweep=...&run=...``, or ``?dataset=...&model=...`` for all runs of a dataset), so a copied
link reopens the same view. Logic lives in ``dpcore.jobs.sweep``; charts in ``dpcore.views.plots``.
"""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd
import streamlit as st

from dpcore.config import TrainConfig, recipe_for
from dpcore.errors import DPExplorerError
from dpcore.jobs import sweep as sweeps
from dpcore.views import plots, report
from dpcore.views.explain import SELECTION_COST, explain
from dpcore.views.progress import format_duration
from pages import ui

FORM_KEY = "tradeoffs_form"  # plain session key: the new-sweep form's values survive page changes
VIEW_KEY = "tradeoffs_view"  # plain session key: {'sweep', 'dataset', 'model', 'run'} when the URL has none
SELECTION_KEY = "tradeoffs_selections"  # plain session key: last seen selection per chart
EPSILON_CHOICES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
CLIP_CHOICES = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
MAX_SEEDS = 5
POLL_S = 2.0
SOURCE_SWEEP, SOURCE_RUNS = "A sweep", "All runs of a dataset"


# ---------------------------------------------------------------------- state: URL first, then session
def _view() -> dict[str, Any]:
    return st.session_state.setdefault(VIEW_KEY, {})


def _get(name: str) -> str | None:
    """A view setting: the URL's value, else the one remembered in this session."""
    return st.query_params.get(name) or _view().get(name)


def _set(name: str, value: str | None) -> None:
    """Keep a view setting in the URL (shareable) and in the session (survives page changes)."""
    _view()[name] = value
    if value:
        if st.query_params.get(name) != value:
            st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]


def _open_run(run_id: str | None) -> None:
    _set("run", run_id)


# ---------------------------------------------------------------------- the new-sweep form
def _form_widget(name: str, default: Any) -> str:
    """Widget key for form field ``name``, seeded from the plain form state (widget state dies on page change)."""
    key = f"tradeoffs_new_{name}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.setdefault(FORM_KEY, {}).get(name, default)
    return key


def _remember_form(names: list[str]) -> None:
    form = st.session_state.setdefault(FORM_KEY, {})
    for name in names:
        form[name] = st.session_state[f"tradeoffs_new_{name}"]


def _on_dataset_change() -> None:
    recipe = recipe_for(st.session_state["tradeoffs_new_dataset"])
    st.session_state["tradeoffs_new_model"] = recipe["model"]
    st.session_state["tradeoffs_new_epochs"] = int(recipe["epochs"])
    st.session_state["tradeoffs_new_clips"] = [float(recipe["max_grad_norm"])]


def new_sweep_form(store: Any, *, expanded: bool) -> None:
    """Grid values, seeds and epochs; shows the run count and a time estimate; starts the sweep."""
    from dpcore.engine.data import DATASETS, dataset_status
    from dpcore.engine.models import MODELS

    with st.expander("Start a new sweep", expanded=expanded, icon=":material/add_chart:"):
        datasets = [name for name in DATASETS if name != "csv"]
        left, middle, right = st.columns(3)
        dataset = left.selectbox(
            "Dataset", datasets, key=_form_widget("dataset", "digits" if "digits" in datasets else datasets[0]),
            on_change=_on_dataset_change, format_func=lambda name: f"{name} — {DATASETS[name].title}",
            help="Every run of the sweep trains on this dataset's fixed member / non-member split.")
        recipe = recipe_for(dataset)
        kind = DATASETS[dataset].kind
        models = [name for name, spec in MODELS.items() if kind in spec.kinds]
        if st.session_state.get("tradeoffs_new_model") not in models:
            st.session_state["tradeoffs_new_model"] = recipe["model"] if recipe["model"] in models else models[0]
        model = middle.selectbox("Model", models, key=_form_widget("model", recipe["model"]),
                                 format_func=lambda name: MODELS[name].title,
                                 help="The same architecture for every run, private or not.")
        epochs = right.number_input("Epochs per run", min_value=1, max_value=200, step=1,
                                    key=_form_widget("epochs", int(recipe["epochs"])),
                                    help="Passes over the training set. The noise is calibrated so each run "
                                         "spends exactly its target ε after this many epochs.")
        left, middle, right = st.columns(3)
        epsilons = left.multiselect(
            "Target ε values", EPSILON_CHOICES, key=_form_widget("epsilons", list(sweeps.DEFAULT_EPSILONS)),
            format_func=lambda v: f"{v:g}",
            help=f"Privacy budgets to train at (δ = {1e-5:g}). Smaller ε = stronger privacy. " + explain("bands"))
        clips = middle.multiselect(
            "Clipping bounds C", CLIP_CHOICES, key=_form_widget("clips", [float(recipe["max_grad_norm"])]),
            format_func=lambda v: f"{v:g}",
            help="max_grad_norm values: each is tried at every ε, so the heatmap can show the best one. "
                 + explain("max_grad_norm"))
        seeds = right.number_input("Seeds", min_value=1, max_value=MAX_SEEDS, step=1, key=_form_widget("seeds", 1),
                                   help="Repeats of every cell with seeds 0, 1, ...; two or more give error bars "
                                        "(± one standard deviation over seeds).")
        baseline = st.checkbox("Include the non-private baseline", key=_form_widget("baseline", True),
                               help="One run per seed without DP: the accuracy every private run is compared with.")
        _remember_form(["dataset", "model", "epochs", "epsilons", "clips", "seeds", "baseline"])

        try:
            spec = sweeps.SweepSpec(base=TrainConfig(dataset=dataset, model=model, epochs=int(epochs)),
                                    epsilons=tuple(epsilons), max_grad_norms=tuple(clips),
                                    seeds=tuple(range(int(seeds))), include_baseline=bool(baseline))
            spec = spec.validate()
            guess = sweeps.estimate(spec, store=store)
        except DPExplorerError as err:
            st.error(str(err), icon=":material/error:")
            return
        status = dataset_status(dataset)
        runs = f"{spec.n_runs} run{'s' if spec.n_runs != 1 else ''}"
        st.markdown(f"**{runs}** · about **{format_duration(guess.seconds)}** one after another ({guess.basis}).")
        st.caption(f"Every run (the baseline too) holds out the same {spec.validation_fraction:.0%} of the training "
                   "examples as a validation set: the best C per ε is chosen on it, never on the held-out "
                   "non-members that test accuracy and the membership attack use.")
        if status == "download":
            st.caption(f"{dataset} is not cached yet: the first run downloads it.")
        if spec.n_runs > sweeps.LARGE_SWEEP_RUNS:
            st.warning(f"This is a large sweep ({spec.n_runs} runs). It queues {sweeps.SWEEP_WINDOW} runs at a time, "
                       "so other jobs still get their turn, but it will keep the machine busy for a while. Fewer ε "
                       "values, bounds or seeds make it quicker.", icon=":material/hourglass_top:")
        if st.button("Start sweep", type="primary", icon=":material/play_arrow:", key="tradeoffs_start"):
            try:
                sweep = sweeps.submit_sweep(ui.queue(), spec)
            except DPExplorerError as err:
                st.error(str(err), icon=":material/error:")
                return
            _set("sweep", sweep.id)
            _set("dataset", None)
            _open_run(None)
            st.rerun()


# ---------------------------------------------------------------------- choosing what to show
def choose_source(store: Any, stored: list[sweeps.Sweep]) -> tuple[str, Any]:
    """('sweep', Sweep), ('runs', (dataset, model)) or ('none', None), from the widgets and the URL."""
    wanted_sweep, wanted_dataset = _get("sweep"), _get("dataset")
    all_runs = store.list_runs(kind="train")
    done = all_runs[all_runs["status"] == "done"] if not all_runs.empty else all_runs
    if not stored and done.empty:
        return "none", None
    default = SOURCE_RUNS if (wanted_dataset and not wanted_sweep) or not stored else SOURCE_SWEEP
    source = st.segmented_control("Show", [SOURCE_SWEEP, SOURCE_RUNS], default=default, key=None,
                                  help="A sweep you started here, or every finished run of one dataset and model "
                                       "(whatever config they were trained with).")
    source = source or default
    if source == SOURCE_SWEEP:
        if not stored:
            st.info("No sweeps yet: start one above.", icon=":material/info:")
            return "none", None
        ids = [sweep.id for sweep in stored]
        names = {sweep.id: sweep.name for sweep in stored}
        index = ids.index(wanted_sweep) if wanted_sweep in ids else 0
        if wanted_sweep and wanted_sweep not in ids:
            st.warning(f"Sweep {wanted_sweep} is not in this runs directory; showing the newest one.",
                       icon=":material/search_off:")
        chosen = st.selectbox("Sweep", ids, index=index, format_func=lambda i: f"{names[i]} · {i}",
                              help="Sweeps stored in the runs directory, newest first.")
        if chosen != _get("sweep"):
            _set("sweep", chosen)
            _open_run(None)
        _set("dataset", None)
        _set("model", None)
        return "sweep", next(sweep for sweep in stored if sweep.id == chosen)
    if done.empty:
        st.info("No finished runs yet.", icon=":material/info:")
        return "none", None
    datasets = sorted(done["dataset"].dropna().unique())
    left, right = st.columns(2)
    dataset = left.selectbox("Dataset", datasets,
                             index=datasets.index(wanted_dataset) if wanted_dataset in datasets else 0)
    models = sorted(done.loc[done["dataset"] == dataset, "model"].dropna().unique())
    wanted_model = _get("model")
    model = right.selectbox("Model", models, index=models.index(wanted_model) if wanted_model in models else 0)
    if dataset != _get("dataset") or model != _get("model"):
        _open_run(None)
    _set("sweep", None)
    _set("dataset", dataset)
    _set("model", model)
    return "runs", (dataset, model)


# ---------------------------------------------------------------------- progress and controls
def sweep_controls(sweep: sweeps.Sweep, progress: sweeps.SweepProgress) -> None:
    """Progress bar, counts, and Cancel / Resume buttons."""
    counts = progress.counts
    parts = [f"{progress.done} of {progress.total} runs done"]
    for state in ("running", "queued", "interrupted", "cancelled", "failed", sweeps.MISSING):
        if counts.get(state):
            parts.append(f"{counts[state]} {'not queued yet' if state == sweeps.MISSING else state}")
    st.progress(progress.fraction, text=" · ".join(parts))
    queue = ui.queue()
    if progress.status == "running":
        if st.button("Cancel sweep", icon=":material/stop_circle:", key="tradeoffs_cancel",
                     help="Drop the sweep's queued runs and stop the running one. Finished runs are kept; "
                          "Resume picks up where it stopped."):
            sweeps.cancel_sweep(queue, sweep.id)
            st.rerun()
    elif progress.status in ("incomplete", "cancelled", "failed"):
        missing = progress.total - progress.done
        why = {"incomplete": "were interrupted (the app restarted), cancelled or not queued yet",
               "cancelled": "were cancelled", "failed": "failed"}[progress.status]
        st.info(f"{missing} run(s) of this sweep {why}. Resume queues exactly those again; the "
                f"{progress.done} finished run(s) are kept and never re-run.", icon=":material/replay:")
        retry = False
        if counts.get("failed"):
            retry = st.checkbox("Also retry failed runs", key="tradeoffs_retry_failed",
                                help="Failed runs usually fail again for the same reason; see their error first.")
        if st.button("Resume sweep", type="primary", icon=":material/replay:", key="tradeoffs_resume"):
            try:
                sweeps.resume_sweep(queue, sweep.id, retry_failed=retry)
            except DPExplorerError as err:
                st.error(str(err), icon=":material/error:")
                return
            st.rerun()


# ---------------------------------------------------------------------- charts
def _selected_run(event: Any, chart_key: str, *, known: set[str], lookup: Any = None) -> str | None:
    """The run a click on chart ``chart_key`` picked, once per new click (None when nothing new)."""
    points = list(getattr(getattr(event, "selection", None), "points", None) or [])
    seen = st.session_state.setdefault(SELECTION_KEY, {})
    signature = tuple((p.get("curve_number"), p.get("point_index")) for p in points)
    if not points or seen.get(chart_key) == signature:
        seen[chart_key] = signature
        return None
    seen[chart_key] = signature
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if isinstance(custom, str) and custom in known:
            return custom
        if lookup is not None:
            run_id = lookup(point)
            if run_id in known:
                return run_id
    return None


def _chart(fig: Any, chart_key: str, caption: str, *, known: set[str], lookup: Any = None) -> None:
    event = st.plotly_chart(fig, key=f"tradeoffs_chart_{chart_key}", on_select="rerun", selection_mode="points",
                            theme=None, config={"displaylogo": False})
    st.caption(caption)
    run_id = _selected_run(event, chart_key, known=known, lookup=lookup)
    if run_id and run_id != _get("run"):
        _open_run(run_id)
        st.rerun()


def tradeoff_charts(points: pd.DataFrame) -> None:
    """The frontier, attack and bound charts and the two heatmaps, each clickable."""
    if points.empty:
        st.info("No finished runs to plot yet: the charts fill in as runs finish.", icon=":material/hourglass_top:")
        return
    known = set(points["run_id"])
    front = sweeps.frontier(points)
    unproven = front[front["epsilon_note"].fillna("").astype(str) != ""] if "epsilon_note" in front else front.iloc[:0]
    if not unproven.empty:
        st.warning("Not every ε here is a proven guarantee (ringed on the chart): "
                   + "; ".join(f"{row.label}: {row.epsilon_note}" for row in unproven.itertuples()),
                   icon=":material/warning:")
    note = sweeps.frontier_note(front)
    if note:
        st.warning(note, icon=":material/warning:")
    left, right = st.columns(2, gap="large")
    with left:
        utility = plots.privacy_utility_chart(front, title="Test accuracy vs ε")
        plots.fit_fraction_axis(plots.add_run_points(utility, points, x="epsilon", y="test_accuracy"))
        _chart(utility, "utility", "Accuracy on held-out data against the ε each run spent (log scale). Points are "
               "seed means with ± 1 std error bars (best clipping bound per ε); grey dots are single runs; the dotted "
               "line is the non-private baseline. Click a point to open its run. " + SELECTION_COST, known=known)
    with right:
        auc = plots.attack_vs_epsilon_chart(front, metric="mia_auc", title="Membership attack AUC vs ε")
        plots.add_run_points(auc, points, x="epsilon", y="mia_auc", y_format=".3f")
        plots.fit_fraction_axis(auc, pad=0.01, include=(0.5,))
        _chart(auc, "auc", "Loss-threshold attack on each model: AUC 0.5 means it cannot tell members from "
               "non-members. Lower is more private.", known=known)
    left, right = st.columns(2, gap="large")
    with left:
        tpr = plots.attack_vs_epsilon_chart(front, metric="mia_tpr_at_1pct_fpr", title="Attack TPR at 1 % FPR vs ε")
        plots.add_run_points(tpr, points, x="epsilon", y="mia_tpr_at_1pct_fpr")
        plots.fit_fraction_axis(tpr, pad=0.005, include=(0.0, 0.01))
        _chart(tpr, "tpr", "Share of members the attack catches while wrongly accusing only 1 % of non-members: "
               "the regime where an attack is dangerous. Chance is 1 %.", known=known)
    with right:
        bounds = sweeps.bounds_data(points)
        fig = plots.epsilon_bounds_chart(bounds, title="Empirical lower bound vs theoretical ε")
        runs_trace = next((i for i, trace in enumerate(fig.data) if trace.name == "runs"), None)

        def bound_run(point: dict[str, Any]) -> str | None:
            index = point.get("point_index")
            if point.get("curve_number") != runs_trace or index is None or index >= len(bounds):
                return None
            return bounds.iloc[int(index)]["run_id"]

        _chart(fig, "bounds", "What the attack demonstrates (a statistical lower bound, 95 % confidence) against "
               "what the accountant guarantees. Points must stay below y = x. The loss attack on one model is a "
               "weak auditor; the Attack lab gives stronger bounds.", known=known, lookup=bound_run)
    accuracy_cells = sweeps.heatmap_data(points)
    if accuracy_cells.empty:
        return
    left, right = st.columns(2, gap="large")
    with left:
        _chart(plots.sweep_heatmap(accuracy_cells, title="Test accuracy by ε and C"), "heat_accuracy",
               "Mean test accuracy for each (target ε, clipping bound C); the red outline marks the C chosen for each "
               "ε, the one with the best validation accuracy (a slice of the training side), not the best cell "
               "here. Click a cell to open one of its runs.", known=known)
    with right:
        clip_cells = sweeps.heatmap_data(points, value="final_clip_fraction")
        _chart(plots.sweep_heatmap(clip_cells, value_title="clipped", colorscale="Blues", mark_best=False,
                                   value_range=(0.0, 1.0),
                                   title="Share clipped at the end of training"), "heat_clip",
               "Share of per-sample gradients longer than C in the last epoch. Around 50-80 % usually trains best; "
               "near 100 % means C is far below the gradient norms.", known=known)


def members_table(rows: pd.DataFrame, *, key: str) -> None:
    """One row per run (or sweep cell), selectable: selecting a row opens its run."""
    if rows.empty:
        return
    config = {
        "run_id": None,
        "epsilon": st.column_config.NumberColumn("ε spent", format="%.3f", help="ε at the run's δ (∞ without DP)."),
        "test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
        "validation_accuracy": st.column_config.NumberColumn(
            "validation accuracy", format="percent",
            help="On the slice of the members held out of training: what the frontier chooses on (empty: the run "
                 "has no validation set)."),
        "mia_auc": st.column_config.NumberColumn("attack AUC", format="%.3f", help="0.5 = chance"),
        "mia_tpr_at_1pct_fpr": st.column_config.NumberColumn("TPR at 1 % FPR", format="percent"),
        "final_clip_fraction": st.column_config.NumberColumn("clipped at end", format="percent"),
    }
    event = st.dataframe(rows, hide_index=True, column_config=config, on_select="rerun",
                         selection_mode="single-row", key=key, width="stretch")
    selected = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    seen = st.session_state.setdefault(SELECTION_KEY, {})
    signature = tuple(selected)
    if selected and seen.get(key) != signature:
        seen[key] = signature
        run_id = rows.iloc[selected[0]]["run_id"]
        if isinstance(run_id, str) and run_id and run_id != _get("run"):
            _open_run(run_id)
            st.rerun()
    seen[key] = signature


def _member_rows(store: Any, sweep: sweeps.Sweep, points: pd.DataFrame) -> pd.DataFrame:
    by_id = points.set_index("run_id") if not points.empty else None
    rows = []
    for member in sweeps.member_states(store, sweep):
        row: dict[str, Any] = {"cell": member.key, "status": member.state, "run_id": member.run_id or ""}
        if by_id is not None and member.run_id in by_id.index:
            point = by_id.loc[member.run_id]
            for column in ("epsilon", "validation_accuracy", "test_accuracy", "mia_auc", "mia_tpr_at_1pct_fpr",
                           "final_clip_fraction"):
                row[column] = point[column]
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- the selected run
def selected_run(store: Any, known: set[str]) -> None:
    """The run picked on a chart or in the table: the shared run view (with its report) and a link."""
    run_id = _get("run")
    if not run_id:
        st.caption("Click a point, a heatmap cell or a table row to open that run here.")
        return
    if not store.exists(run_id):
        st.warning(f"Run {run_id} is not in this runs directory (deleted?).", icon=":material/search_off:")
        return
    st.divider()
    header, close = st.columns([5, 1], vertical_alignment="center")
    header.subheader(f"Run {run_id}")
    if close.button("Close", icon=":material/close:", key="tradeoffs_close_run"):
        _open_run(None)
        st.rerun()
    try:
        st.page_link("pages/runs.py", label="Open in the Runs page", icon=":material/table_view:",
                     query_params={"run": run_id})
    except Exception:  # the page is not in the navigation (e.g. this page run on its own)
        pass
    try:
        run_view = importlib.import_module("pages.run_view")
    except ImportError:
        run_view = None
    if run_view is None:
        record = store.get(run_id)
        st.markdown(f"**{record.name}** · {record.status}")
        st.json(record.summary, expanded=False)
        return
    try:
        run_view.render_run(run_id, store=store, queue=ui.queue(), key="tradeoffs_run")
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")


# ---------------------------------------------------------------------- page
def _sweep_body(sweep_id: str, polling: bool) -> None:
    store = ui.store()
    try:
        sweep = sweeps.load_sweep(store, sweep_id)
        states = sweeps.member_states(store, sweep)
        progress = sweeps.sweep_progress(store, sweep, states=states)
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")
        return
    if polling and progress.status != "running":
        st.rerun()  # whole page once, without the timer
    st.markdown(f"**{sweep.name}**  \n:gray[{sweep.id} · created {sweep.created[:16].replace('T', ' ')} UTC]")
    sweep_controls(sweep, progress)
    points = sweeps.run_points(sweeps.sweep_runs(store, sweep))
    st.download_button("Sweep report (HTML)", data=lambda: report.sweep_report(store, sweep_id),
                       file_name=report.report_filename(sweep_id), mime="text/html", on_click="ignore",
                       icon=":material/download:", key="tradeoffs_sweep_report",
                       help="A self-contained HTML file (plotly included, opens offline) with the grid, these charts, "
                            "every run's numbers and checks, and the environment: for reviews.")
    tradeoff_charts(points)
    with st.expander(f"Runs of this sweep ({len(states)})", icon=":material/table_view:"):
        members_table(_member_rows(store, sweep, points), key="tradeoffs_members")
    selected_run(store, set(points["run_id"]) if not points.empty else set())


def _runs_body(dataset: str, model: str) -> None:
    store = ui.store()
    runs = sweeps.runs_of(store, dataset=dataset, model=model)
    points = sweeps.run_points(runs)
    st.caption(f"{len(points)} finished run(s) of {dataset} {model}, with whatever epochs, batch size and learning "
               "rate each was trained with: compare like with like, or start a sweep for a controlled grid.")
    tradeoff_charts(points)
    with st.expander(f"Runs ({len(points)})", icon=":material/table_view:"):
        columns = ["label", "epsilon", "validation_accuracy", "test_accuracy", "mia_auc", "mia_tpr_at_1pct_fpr",
                   "final_clip_fraction", "run_id"]
        members_table(points[columns] if not points.empty else points, key="tradeoffs_runs_table")
    selected_run(store, set(points["run_id"]) if not points.empty else set())


def main() -> None:
    st.title("Tradeoffs")
    st.caption("How much accuracy does privacy cost, and how much does it buy? Sweep target ε (and the clipping "
               "bound, and seeds for error bars) and see the frontier.")
    store = ui.store()
    try:
        stored = sweeps.list_sweeps(store)
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")
        stored = []
    new_sweep_form(store, expanded=not stored)
    source, choice = choose_source(store, stored)
    if source == "none":
        if not stored:
            st.info("No sweeps or finished runs yet. Start a sweep above: a small one (3 ε values, one seed, a few "
                    "epochs) shows the tradeoff in a minute or two on CPU.", icon=":material/info:")
        return
    with st.expander("How to read these charts", icon=":material/help:"):
        for topic in ("bands", "baseline", "auc", "max_grad_norm", "lower_bound"):
            st.markdown(explain(topic))
    if source == "sweep":
        progress = sweeps.sweep_progress(store, choice)
        polling = progress.status == "running"
        st.fragment(run_every=POLL_S if polling else None)(_sweep_body)(choice.id, polling)
    else:
        _runs_body(*choice)


ui.route_through_app()
main()
