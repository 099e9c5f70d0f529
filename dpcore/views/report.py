"""Self-contained HTML reports of one run, of runs side by side, or of a sweep, for reviews: one file that
opens offline.

A report holds the dataset and model, the config, epsilon and delta with the accountant and
sigma, accuracy against the non-private baseline, the membership-attack results and empirical
lower bounds, the seed's four checks, the guidance warnings and the environment (versions,
device, date), plus the dashboard's charts. plotly.js is inlined once (with the first chart);
nothing is fetched from the network.

>>> html = render_html("Example", [("Numbers", "<p>42</p>")])
>>> html.startswith("<!DOCTYPE html>") and "<p>42</p>" in html
True
"""

from __future__ import annotations

import html as html_lib
import importlib.metadata
import math
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpcore.attacks import ATTACKS
from dpcore.config import TrainConfig, guidance
from dpcore.errors import DPExplorerError
from dpcore.privacy import tradeoff as tradeoff_module
from dpcore.privacy.caveats import EpsilonStatus, caveat_labels, epsilon_status
from dpcore.privacy.checks import Check, all_passed, run_checks
from dpcore.views.explain import BOUND_CAPTION, SELECTION_COST, attack_bound_sentence
from dpcore.views.explain import format_number as fmt

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from dpcore.store.runs import RunRecord, RunStore

ENVIRONMENT_PACKAGES = ("torch", "opacus", "streamlit", "plotly", "numpy", "pandas", "scikit-learn")

#: Attack numbers a run's summary may hold: key -> (what it is, how to show it).
ATTACK_FIELDS: dict[str, tuple[str, str]] = {
    "mia_auc": ("loss-threshold attack AUC (0.5 = chance)", ".3f"),
    "mia_tpr_at_1pct_fpr": ("loss-threshold attack TPR at 1 % FPR", ".1%"),
    "mia_advantage": ("loss-threshold attack advantage, max(TPR - FPR)", ".3f"),
    "mia_epsilon_lower": ("ε lower bound from the loss attack (one model: an indication)", ".3f"),
    "empirical_epsilon_lower": ("empirical ε lower bound (attack lab, strongest attack)", ".3f"),
    "empirical_epsilon_attack": ("attack that gave the lower bound", "s"),
    "canary_epsilon_lower": ("ε lower bound from the one-run canary audit (compare with the canary run's ε below)",
                             ".3f"),
    "canary_accountant_epsilon": ("the canary run's own accountant ε: the one the canary bound must stay under "
                                  "(not this run's ε)", ".3f"),
    "canary_epsilon_power": ("canary audit power: the largest ε its guesses could certify were all right", ".3f"),
    "canary_mode": ("canary audit kind (white-box: gradient canaries; black-box: mislabelled examples)", "s"),
    "attack_models": ("reference models used by the attack lab", "d"),
}
# Per-attack numbers of the attack lab, ``<attack>_<measure>`` (see ``dpcore.jobs.attack.summary_fields``).
_ATTACK_PATTERN = re.compile(r"(?P<attack>.+)_(?P<measure>auc|tpr_at_1pct_fpr|epsilon_lower)$")
_ATTACK_MEASURES = {"auc": ("AUC", ".3f"), "tpr_at_1pct_fpr": ("TPR at 1 % FPR", ".1%"),
                    "epsilon_lower": ("ε lower bound", ".3f")}
_ATTACK_ALIASES = {"lira_auc", "lira_tpr_at_1pct_fpr"}  # copies of the online (else offline) LiRA numbers

_CSS = """
body { font-family: Inter, 'Segoe UI', Helvetica, Arial, sans-serif; color: #262730; margin: 0; background: #fafafa; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: white; }
h1 { font-size: 26px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #e6e6e6;
padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
p, li { line-height: 1.5; } .muted { color: #6b6b6b; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13.5px; }
th, td { text-align: left; padding: 4px 12px 4px 0; border-bottom: 1px solid #eeeeee; vertical-align: top; }
th { color: #555; font-weight: 600; } td.num { font-variant-numeric: tabular-nums; text-align: right; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.pass { background: #e3f4e3; color: #1e7b1e; } .fail { background: #fbe3e3; color: #b22222; }
.na { background: #eeeeee; color: #666; } .warning { color: #a65b00; } .info { color: #3d6b99; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
.card { border: 1px solid #e6e6e6; border-radius: 8px; padding: 8px 14px; min-width: 150px; }
.card .label { font-size: 12px; color: #6b6b6b; } .card .value { font-size: 22px; font-weight: 600; }
.card .sub { font-size: 12px; color: #6b6b6b; }
.figures { display: grid; gap: 8px 20px; } .figures.one { grid-template-columns: minmax(0, 1fr); }
.figures.two { grid-template-columns: repeat(2, minmax(0, 1fr)); } .figures > div { min-width: 0; }
.explain { background: #f6f8fb; border-left: 3px solid #9db4d3; padding: 6px 12px; font-size: 13.5px; margin: 8px 0; }
code { background: #f2f2f2; padding: 0 4px; border-radius: 3px; font-size: 12.5px; }
"""


# ---------------------------------------------------------------------- plain data for one run
@dataclass
class ReportRun:
    """What a run report needs, from the store (``from_record``) or from a fresh result (``from_result``)."""

    id: str | None
    name: str
    status: str
    config: dict[str, Any]
    summary: dict[str, Any]
    steps: pd.DataFrame | None = None
    epochs: pd.DataFrame | None = None
    stop_status: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    created: str | None = None
    finished: str | None = None
    device: str | None = None
    roc: dict[str, Any] | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    artifacts: Path | None = None
    accountant_history: list[tuple[float, float, int]] | None = None

    def tradeoff_bound(self) -> Any:
        """The most any membership attack can achieve on this run (``dpcore.privacy.tradeoff.TradeoffCurve``).

        From the accountant history of a fresh result, else the stored checkpoint or summary.
        """
        from dpcore.privacy import tradeoff

        if self.accountant_history is not None and self.private:
            return tradeoff.tradeoff_from_history(self.accountant_history)
        return tradeoff.tradeoff_for_run(summary=self.summary, config=self.config, artifacts=self.artifacts)

    @classmethod
    def from_record(cls, store: RunStore, record: RunRecord) -> ReportRun:
        """The run as stored: config, summary, metrics and the attack's ROC (``roc.json``) when present."""
        from dpcore.jobs.training import load_roc

        roc = None
        try:
            roc = load_roc(store.artifacts_path(record.id))
        except DPExplorerError:
            roc = None
        return cls(id=record.id, name=record.name, status=record.status, config=dict(record.config),
                   summary=dict(record.summary), steps=store.steps(record.id), epochs=store.epochs(record.id),
                   stop_status=record.stop_status, stop_reason=record.stop_reason, error=record.error_message,
                   created=record.created, finished=record.finished, device=record.device, roc=roc,
                   group=record.group, artifacts=store.artifacts_path(record.id))

    @classmethod
    def from_result(cls, result: Any, *, attack: Any = None, summary: Mapping[str, Any] | None = None,
                    name: str | None = None) -> ReportRun:
        """A run that was trained in this process (``dpcore.engine.training.RunResult``), not stored."""
        roc = None
        if attack is not None:
            roc = {"auc": float(attack.auc), **attack.roc_points()}
        return cls(id=None, name=name or result.config.label(), status="done", config=result.config.to_dict(),
                   summary={**result.summary(), **dict(summary or {})}, steps=result.history,
                   epochs=result.epochs, stop_status=result.status, stop_reason=result.stop_reason,
                   device=result.device, roc=roc,
                   accountant_history=[tuple(segment) for segment in getattr(result, "accountant_history", [])])

    @property
    def private(self) -> bool:
        """Whether the run used DP-SGD."""
        return bool(self.config.get("private", True))

    @property
    def final_epsilon(self) -> float:
        """Epsilon spent (inf for a non-private run, NaN when unknown)."""
        if not self.private:
            return math.inf
        value = self.summary.get("final_epsilon")
        return float(value) if isinstance(value, (int, float)) else math.nan

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch (fraction), NaN when unknown."""
        value = self.summary.get("test_accuracy")
        return float(value) if isinstance(value, (int, float)) else math.nan


def summary_checks(config: Mapping[str, Any], summary: Mapping[str, Any], *, max_epsilon: float = 10.0,
                   max_auc: float = 0.60, min_accuracy: float = 0.55, allow_reproducible: bool = False) -> list[Check]:
    """The privacy gate's checks (``dpcore.privacy.checks.run_checks``) for a stored run's config and summary.

    A non-private run has epsilon = inf, so it fails the epsilon checks on purpose; a run
    without an attack result gets ``passed=None`` for the attack check. The epsilon checks use
    a proven bound (RDP for a GDP run); a reproducible run fails an extra check unless allowed.
    """
    return run_checks(config, summary, max_epsilon=max_epsilon, max_auc=max_auc, min_accuracy=min_accuracy,
                      allow_reproducible=allow_reproducible)


def caveats_html(status: EpsilonStatus) -> str:
    """A warning paragraph per caveat of a run's ε (``dpcore.privacy.caveats``), '' when its ε is a plain guarantee."""
    if not status.caveats:
        return ""
    items = "".join(f"<li><strong>{_esc(caveat.label)}</strong>: {_esc(caveat.explanation)}</li>"
                    for caveat in status.caveats)
    return (f'<div class="explain warning"><p><strong>{_esc(status.text(".2f"))}</strong>: this ε is not a '
            f"plain guarantee.</p><ul>{items}</ul></div>")


def environment(*, device: str | None = None) -> dict[str, str]:
    """Python, platform, package versions, the device and the date (UTC) this report was made with."""
    info = {"generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}
    for package in ENVIRONMENT_PACKAGES:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    if device is None:
        try:
            from dpcore.engine.training import describe_device, resolve_device

            device = describe_device(resolve_device("auto"))
        except Exception:  # a report must not fail for want of a device description
            device = "unknown"
    info["device"] = device
    return info


# ---------------------------------------------------------------------- small HTML helpers
def _esc(value: Any) -> str:
    return html_lib.escape(str(value), quote=True)


def _md(text: str) -> str:
    """The little markdown ``dpcore.views.explain`` uses (**bold**, `code`) as HTML."""
    escaped = _esc(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, *, raw: bool = False,
           align_numbers: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they must already be HTML). ``align_numbers``
    right-aligns cells that hold a number (for tables with a column per quantity)."""
    def cell(value: Any, tag: str) -> str:
        text = str(value) if raw else _esc(value)
        numeric = align_numbers and re.fullmatch(r"[-+−]?[\d.,%∞ ±e+-]+", str(value) or "x") is not None
        return f"<{tag}{' class=num' if numeric and tag == 'td' else ''}>{text}</{tag}>"

    parts = ["<table>"]
    if header:
        parts.append("<tr>" + "".join(cell(h, "th") for h in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _badge(passed: bool | None) -> str:
    if passed is True:
        return '<span class="badge pass">pass</span>'
    if passed is False:
        return '<span class="badge fail">fail</span>'
    return '<span class="badge na">n/a</span>'


def _cards(cards: Sequence[tuple[str, str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{_esc(label)}</div><div class="value">{_esc(value)}</div>'
        f'<div class="sub">{_esc(sub)}</div></div>' for label, value, sub in cards) + "</div>"


def figures_html(figures: Sequence[go.Figure]) -> list[str]:
    """Each figure as an HTML fragment; plotly.js is inlined in the first one only (the report works offline)."""
    fragments = []
    for index, figure in enumerate(figures):
        fragments.append(figure.to_html(full_html=False, include_plotlyjs=index == 0, default_width="100%",
                                        config={"displaylogo": False, "responsive": True}))
    return fragments


@dataclass(frozen=True)
class Figures:
    """A group of charts inside a report section, laid out side by side (two per row), with a caption."""

    figures: Sequence[Any]
    caption: str = ""


Content = str | Figures | Sequence[str | Figures]


def render_html(title: str, sections: Sequence[tuple[str, Content]], *, subtitle: str = "") -> str:
    """The whole document. Each section is (heading, content): HTML text, a ``Figures`` group, or a list of
    both in order. plotly.js is inlined once, with the first chart. Returns one HTML string, all inline."""
    blocks = [(heading, [content] if isinstance(content, (str, Figures)) else list(content))
              for heading, content in sections]
    charts = [fig for _, parts in blocks for part in parts if isinstance(part, Figures) for fig in part.figures]
    fragments = iter(figures_html(charts))
    body = [f"<h1>{_esc(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="muted">{_esc(subtitle)}</p>')
    for heading, parts in blocks:
        body.append(f"<h2>{_esc(heading)}</h2>")
        for part in parts:
            if isinstance(part, str):
                body.append(part)
            elif part.figures:
                # explicit column counts: plotly sizes a chart from its cell while the page is still loading
                columns = "one" if len(part.figures) == 1 else "two"
                body.append(f'<div class="figures {columns}">'
                            + "".join(f"<div>{next(fragments)}</div>" for _ in part.figures) + "</div>")
                if part.caption:
                    body.append(f'<p class="muted">{_esc(part.caption)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
            + "".join(body) + "</main></body></html>\n")


# ---------------------------------------------------------------------- sections shared by both reports
def _dataset_section(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    from dpcore.engine import data

    name = config.get("dataset", "?")
    spec = data.DATASETS.get(name)
    rows = [("dataset", name), ("model", config.get("model") or "-")]
    if spec is not None:
        rows += [("title", spec.title), ("description", spec.description)]
    if summary.get("n_members") is not None:
        rows.append(("training examples (members)", summary["n_members"]))
    if summary.get("n_non_members") is not None:
        rows.append(("held-out examples (non-members, the test set)", summary["n_non_members"]))
    if config.get("data_path"):
        rows.append(("data file", config["data_path"]))
    if summary.get("fixes"):
        rows.append(("replaced for DP", "; ".join(summary["fixes"])))
    return _table(rows)


def _config_section(config: Mapping[str, Any]) -> str:
    import dataclasses

    order = {f.name: i for i, f in enumerate(dataclasses.fields(TrainConfig))}  # the dataclass's order
    keys = sorted(config, key=lambda key: (order.get(key, len(order)), key))
    rows = [(key, fmt(config[key], "g") if isinstance(config[key], float) else
             ("-" if config[key] is None else config[key])) for key in keys if key != "extra" or config[key]]
    return _table(rows, ("setting", "value"))


def _guidance_section(notes: Sequence[Any]) -> str:
    if not notes:
        return "<p>No warnings: the configuration follows the usual advice.</p>"
    return "<ul>" + "".join(f'<li class="{_esc(n.level)}"><strong>{_esc(n.level)}</strong> '
                            f"({_esc(n.field)}): {_esc(n.message)}</li>" for n in notes) + "</ul>"


def _guidance_for(config: Mapping[str, Any], summary: Mapping[str, Any]) -> list[Any]:
    n = summary.get("n_members")
    try:
        cfg = TrainConfig.from_dict(dict(config))
        return guidance(cfg, int(n)) if n else []
    except DPExplorerError:
        return []


def _checks_section(checks: Sequence[Check]) -> str:
    rows = [(_badge(c.passed), f"<strong>{_esc(c.name)}</strong>", _esc(c.description),
             _esc(c.value_text()), _esc(fmt(c.threshold, "g"))) for c in checks]
    verdict = "all checks pass" if all_passed(list(checks)) else "at least one check fails or was not run"
    return (_table(rows, ("", "check", "rule", "measured", "threshold"), raw=True)
            + f'<p class="muted">Verdict: {_esc(verdict)}. These are the checks of '
              "<code>python -m dpcore check</code> (the CI privacy gate).</p>")


def _environment_section(env: Mapping[str, str], *, trained_on: str | None = None) -> str:
    rows = [("report generated", env.get("generated", ""))]
    if trained_on:
        rows.append(("trained on device", trained_on))
    rows.append(("report machine device", env.get("device", "")))
    rows += [("python", env.get("python", "")), ("platform", env.get("platform", ""))]
    rows += [(package, env.get(package, "")) for package in ENVIRONMENT_PACKAGES]
    return _table(rows)


def _explain(*topics: str) -> str:
    from dpcore.views.explain import explain

    return "".join(f'<div class="explain">{_md(explain(topic))}</div>' for topic in topics)


def attack_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field, meaning, value) for every attack number in ``summary`` (known ones first)."""
    rows = []
    for key, (meaning, spec) in ATTACK_FIELDS.items():
        if summary.get(key) is not None:
            rows.append((key, meaning, fmt(summary[key], spec)))
    for key, value in summary.items():
        match = _ATTACK_PATTERN.fullmatch(key)
        if key in ATTACK_FIELDS or key in _ATTACK_ALIASES or match is None or not isinstance(value, (int, float)):
            continue
        attack = ATTACKS.get(match["attack"].replace("_", "-"))
        measure, spec = _ATTACK_MEASURES[match["measure"]]
        title = attack.title if attack is not None else match["attack"].replace("_", " ")
        rows.append((key, f"attack lab: {title} {measure}", fmt(value, spec)))
    return rows


# ---------------------------------------------------------------------- one run
def run_report_html(run: ReportRun, *, baseline: ReportRun | None = None, env: Mapping[str, str] | None = None,
                    thresholds: Mapping[str, float] | None = None) -> str:
    """The HTML report of one run (compared with ``baseline``, a non-private run, when given)."""
    from dpcore.views import plots
    from dpcore.views.explain import epsilon_sentence

    env = dict(env or environment(device=None))
    config, summary = run.config, run.summary
    delta = config.get("target_delta")
    accountant = (summary.get("accountant") or config.get("accountant") or "rdp").upper()
    sigma = summary.get("noise_multiplier") or config.get("noise_multiplier")
    eps = run.final_epsilon
    status = epsilon_status(config=config, summary=summary)
    accuracy = run.test_accuracy
    base_acc = baseline.test_accuracy if baseline is not None else math.nan
    gap = (accuracy - base_acc) if math.isfinite(base_acc) and math.isfinite(accuracy) else math.nan

    cards = [
        (f"ε spent (δ = {fmt(delta, 'g')})", fmt(eps, ".2f"),
         (f"{accountant} accountant" + (f"; {status.note('.2f')}" if status.note() else ""))
         if run.private else "no DP: no guarantee"),
        ("noise multiplier σ", fmt(sigma, ".3f") if run.private else "-",
         f"C = {fmt(config.get('max_grad_norm'), 'g')}" if run.private else ""),
        ("test accuracy", fmt(accuracy, ".1%"),
         f"baseline {fmt(base_acc, '.1%')} ({fmt(100 * gap, '+.1f')} points)" if math.isfinite(gap) else
         "no non-private baseline stored"),
        ("membership attack AUC", fmt(summary.get("mia_auc"), ".3f"), "0.5 = chance"),
        ("clipped at the end", fmt(summary.get("final_clip_fraction"), ".0%"), "share of per-sample gradients"),
    ]
    if not run.private:
        mode = "non-private baseline"
    else:
        mode = "target ε (σ calibrated)" if config.get("target_epsilon") is not None else "fixed σ"
    privacy_rows = [
        ("mode", mode),
        ("target ε", fmt(config.get("target_epsilon"), "g")),
        ("ε spent", fmt(eps, ".4f")),
        ("ε is a proven bound", ("yes" if status.is_guarantee
                                 else "no: " + status.note(".4f", include_reproducible=False))
         if run.private else "-"),
        ("proven bound (same schedule)", (f"ε = {fmt(status.bound, '.4f')} ({status.bound_accountant.upper()})"
                                          if status.bound is not None and status.bound_accountant else
                                          status.bound_text() or "-") if run.private else "-"),
        ("noise and sampling", ("follow the seed: " + caveat_labels([c for c in status.caveats
                                                                    if c.kind == "reproducible"])
                                if status.reproducible else "secret (fresh OS entropy, never stored)")
         if run.private else "-"),
        ("δ", fmt(delta, "g")),
        ("accountant", accountant if run.private else "-"),
        ("noise multiplier σ", fmt(sigma, ".4f") if run.private else "-"),
        ("max_grad_norm C", fmt(config.get("max_grad_norm"), "g") if run.private else "- (no clipping)"),
        ("sampling rate q", fmt(summary.get("sample_rate"), ".4g")),
        ("optimizer steps", fmt(summary.get("steps"), "d")),
        ("epochs done", fmt(summary.get("epochs_done"), "d")),
        ("ε limit (hard stop)", fmt(config.get("epsilon_limit"), "g")),
    ]
    sentence = epsilon_sentence(eps, delta or 0.0) if math.isfinite(eps) or not run.private else ""
    accuracy_rows = [
        ("test accuracy", fmt(accuracy, ".2%")),
        ("train accuracy", fmt(summary.get("train_accuracy"), ".2%")),
        ("non-private baseline test accuracy", fmt(base_acc, ".2%")),
        ("baseline run", baseline.id or baseline.name if baseline is not None else "none stored"),
        ("accuracy cost of privacy", f"{fmt(-100 * gap, '.1f')} points" if math.isfinite(gap) else "-"),
    ]
    attack = attack_rows(summary)
    attack_html = (_table(attack, ("field", "meaning", "value")) if attack
                   else "<p>No attack results are stored for this run.</p>")
    attack_html += _explain("auc", "lower_bound")
    thresholds = dict(thresholds or {})
    checks = summary_checks(config, summary, **thresholds)
    status_rows = [("status", run.status), ("stop", run.stop_status or "-"), ("why it stopped", run.stop_reason or "-"),
                   ("created", run.created or "-"), ("finished", run.finished or "-"),
                   ("training time", f"{fmt(summary.get('seconds'), '.1f')} s"),
                   ("grad sample mode", summary.get("grad_sample_mode") or "-")]
    if run.error:
        status_rows.append(("error", run.error))
    if run.group:
        status_rows.append(("sweep / group", run.group))

    label = run.name
    training_figs = []
    if run.steps is not None and not run.steps.empty:
        if run.private:
            training_figs.append(plots.epsilon_chart([(label, run.steps)], target_epsilon=config.get("target_epsilon"),
                                                     epsilon_limit=config.get("epsilon_limit"), delta=delta))
            training_figs.append(plots.clip_fraction_chart([(label, run.steps)]))
        training_figs.append(plots.loss_chart([(label, run.steps)]))
    if run.epochs is not None and not run.epochs.empty:
        base_epochs = baseline.epochs if baseline is not None and baseline.epochs is not None else None
        training_figs.append(plots.accuracy_chart([(label, run.epochs)], baseline=base_epochs))
    attack_parts: list[str | Figures] = [attack_html]
    if run.roc is not None and run.roc.get("fpr"):
        curve = [("loss attack", run.roc["fpr"], run.roc["tpr"], run.roc.get("auc"))]
        bound = run.tradeoff_bound()
        bound_epsilon = eps if run.private and math.isfinite(eps) else None
        empirical = summary.get("mia_tpr_at_1pct_fpr")
        if not isinstance(empirical, (int, float)) or not math.isfinite(empirical):
            empirical = tradeoff_module.empirical_tpr_at(fpr=run.roc["fpr"], tpr=run.roc["tpr"])
        limit = attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=empirical, caveat=bound.caveat)
        attack_parts.append(f"<p><b>{_esc(limit)}</b></p>")
        attack_parts.append(Figures([plots.roc_chart(curve, bound=bound, bound_epsilon=bound_epsilon),
                                     plots.roc_chart(curve, log_scale=True, n_non_members=run.roc.get("n_non_members"),
                                                     bound=bound, bound_epsilon=bound_epsilon)],
                                    "ROC of the loss-threshold attack. Left: linear axes; right: log axes, the "
                                    "low false-positive regime where an attack is dangerous. " + BOUND_CAPTION))

    sections: list[tuple[str, Content]] = [
        ("Summary", _cards(cards) + caveats_html(status) + f"<p>{_esc(sentence)}</p>"),
        ("Training", Figures(training_figs, "ε spent and share of clipped gradients per step, loss per step, "
                                            "accuracy per epoch (dotted: the non-private baseline).")),
        ("Dataset and model", _dataset_section(config, summary)),
        ("Privacy", _table(privacy_rows) + _explain("epsilon", "delta")),
        ("Accuracy against the non-private baseline", _table(accuracy_rows) + _explain("baseline")),
        ("Membership attacks and empirical lower bounds", attack_parts),
        ("Checks", _checks_section(checks)),
        ("Guidance", _guidance_section(_guidance_for(config, summary))),
        ("Configuration", _config_section(config)),
        ("Run", _table(status_rows)),
        ("Environment", _environment_section(env, trained_on=run.device or summary.get("device"))),
    ]
    subtitle = f"Run {run.id or '(not stored)'} · generated {env.get('generated', '')} by DP Explorer"
    return render_html(f"DP Explorer report: {label}", sections, subtitle=subtitle)


def run_report(store: RunStore, run_id: str, *, thresholds: Mapping[str, float] | None = None) -> str:
    """The HTML report of stored run ``run_id`` (RunNotFound for an unknown id)."""
    from dpcore.jobs.training import find_baseline

    record = store.get(run_id)
    run = ReportRun.from_record(store, record)
    baseline_record = find_baseline(store, run_id) if run.private else None
    baseline = ReportRun.from_record(store, baseline_record) if baseline_record is not None else None
    return run_report_html(run, baseline=baseline, env=environment(device=None), thresholds=thresholds)


# ---------------------------------------------------------------------- one sweep
def _chosen_on_text(row: dict[str, Any]) -> str:
    """How a frontier row's clipping bound was chosen, for the sweep report's table."""
    return {"validation": "validation accuracy", "test": "test accuracy (no validation set)",
            "single": "nothing to choose"}.get(str(row.get("chosen_on")), "-")


def sweep_report(store: RunStore, sweep_id: str) -> str:
    """The HTML report of a sweep: grid, progress, the tradeoff charts and every member's numbers and checks."""
    from dpcore.jobs import sweep as sweeps
    from dpcore.views import plots

    sweep = sweeps.load_sweep(store, sweep_id)
    states = sweeps.member_states(store, sweep)
    progress = sweeps.sweep_progress(store, sweep, states=states)
    points = sweeps.run_points(sweeps.sweep_runs(store, sweep))
    front = sweeps.frontier(points)
    spec = sweep.spec
    base = spec.base.resolve()
    env = environment(device=None)

    grid_rows = [("dataset", base.dataset), ("model", base.model),
                 ("target ε", ", ".join(f"{e:g}" for e in spec.epsilons) or "-"),
                 ("δ", fmt(base.target_delta, "g")), ("accountant", base.accountant.upper()),
                 ("clipping bounds C", ", ".join(f"{c:g}" for c in spec.max_grad_norms)),
                 ("seeds", ", ".join(str(s) for s in spec.seeds)),
                 ("non-private baseline", "yes (one per seed)" if spec.include_baseline else "no"),
                 ("validation split", f"{spec.validation_fraction:.0%} of the members, held out of training (fixed "
                                      "slice, every run)" if spec.validation_fraction
                  else "none (a sweep recorded before validation splits)"),
                 ("runs", spec.n_runs)]
    shared = {key: value for key, value in base.to_dict().items()
              if key not in ("target_epsilon", "max_grad_norm", "seed", "private", "noise_multiplier", "extra")}
    counts = ", ".join(f"{n} {state}" for state, n in progress.counts.items() if n)
    progress_html = (f"<p><strong>{progress.done} of {progress.total} runs done</strong> "
                     f"(status: {_esc(progress.status)}; {_esc(counts)}).</p>")

    frontier_rows = []
    for row in front.to_dict("records"):
        note = row.get("epsilon_note")
        frontier_rows.append((
            row["label"], fmt(row["epsilon"], ".3f") + (f" ({note})" if isinstance(note, str) and note else ""),
            fmt(row["max_grad_norm"], "g"), _chosen_on_text(row),
            fmt(row.get("validation_accuracy"), ".1%"),
            f"{fmt(row['test_accuracy'], '.1%')} ± {fmt(row['test_accuracy_std'], '.1%')}",
            fmt(row["mia_auc"], ".3f"), fmt(row["mia_tpr_at_1pct_fpr"], ".1%"),
            fmt(row["final_clip_fraction"], ".0%"), row["n_runs"]))
    frontier_html = (_table(frontier_rows, ("setting", "ε spent (mean)", "chosen C", "chosen on",
                                            "validation accuracy", "test accuracy ± std", "attack AUC",
                                            "TPR at 1 % FPR", "clipped at end", "runs"),
                            align_numbers=True)
                     if frontier_rows else "<p>No finished runs yet.</p>")
    selection_note = sweeps.frontier_note(front)
    if selection_note:
        frontier_html += f'<p class="warning"><strong>Note:</strong> {_esc(selection_note)}</p>'
    frontier_html += ('<p class="muted">Seeds averaged; ± is the sample standard deviation over seeds. '
                      f"{_esc(SELECTION_COST)}</p>")

    member_rows = []
    by_id = {row["run_id"]: row for row in points.to_dict("records")}
    checks_failed = 0
    notes: dict[str, Any] = {}
    for member in states:
        record = member.run
        point = by_id.get(member.run_id or "", {})
        verdict = "-"
        if record is not None and record.status == "done":
            checks = summary_checks(record.config, record.summary)
            passed = sum(c.passed is True for c in checks)
            verdict = f"{passed}/{len(checks)} pass"
            checks_failed += not all_passed(checks)
            for note in _guidance_for(record.config, record.summary):
                notes.setdefault(note.message, note)
        note = point.get("epsilon_note")
        member_rows.append((member.key, member.state,
                            fmt(point.get("epsilon"), ".3f") + (f" ({note})" if isinstance(note, str) and note else ""),
                            fmt(point.get("validation_accuracy"), ".1%"),
                            fmt(point.get("test_accuracy"), ".1%"), fmt(point.get("mia_auc"), ".3f"),
                            fmt(point.get("mia_tpr_at_1pct_fpr"), ".1%"), fmt(point.get("final_clip_fraction"), ".0%"),
                            verdict, member.run_id or "-"))
    members_html = _table(member_rows, ("cell", "status", "ε spent", "validation accuracy", "test accuracy",
                                        "attack AUC",
                                        "TPR at 1 % FPR", "clipped at end", "checks", "run id"), align_numbers=True)
    members_html += (f'<p class="muted">Checks are the seed\'s four (ε within budget, ε below 10, attack AUC below '
                     f"0.6, accuracy above 0.55); {checks_failed} finished run(s) fail at least one. Non-private "
                     "runs fail the ε checks by design.</p>")

    utility = plots.privacy_utility_chart(front)
    plots.add_run_points(utility, points, x="epsilon", y="test_accuracy", name="single runs", hint=None)
    plots.fit_fraction_axis(utility)
    tradeoff: list[str | Figures] = [
        Figures([utility], "Test accuracy against ε spent (log scale), seeds averaged with ± 1 std error bars; grey "
                           "dots are single runs; the dotted line is the non-private baseline."),
        frontier_html,
        Figures([plots.attack_vs_epsilon_chart(front, metric="mia_auc"),
                 plots.attack_vs_epsilon_chart(front, metric="mia_tpr_at_1pct_fpr")],
                "Loss-threshold attack on each run: AUC (0.5 = chance) and true-positive rate at a 1 % false-positive "
                "rate (chance: 1 %)."),
    ]
    bounds = sweeps.bounds_data(points)
    if not bounds.empty:
        tradeoff.append(Figures([plots.epsilon_bounds_chart(bounds)],
                                "What the attacks demonstrate (a statistical lower bound) against what the accountant "
                                "guarantees (an upper bound); points above y = x would mean a broken guarantee."))
    clipping: list[str | Figures] = []
    accuracy_cells = sweeps.heatmap_data(points)
    if not accuracy_cells.empty:
        clip_cells = sweeps.heatmap_data(points, value="final_clip_fraction")
        clipping.append(Figures([
            plots.sweep_heatmap(accuracy_cells),
            plots.sweep_heatmap(clip_cells, value_title="clipped at end", colorscale="Blues", mark_best=False,
                                value_range=(0.0, 1.0),
                                title="Share clipped at the end of training")],
            "Left: mean test accuracy for every (ε, C) pair, the C chosen per ε (best validation accuracy) "
            "outlined. Right: share of per-sample "
            "gradients clipped in the last epoch (50-80 % usually trains best)."))
    clipping.append(_explain("max_grad_norm", "clip_fraction"))

    sections: list[tuple[str, Content]] = [
        ("Grid", _table(grid_rows) + f'<p class="muted">{_esc(spec.describe())}</p>'),
        ("Progress", progress_html),
        ("Tradeoff", tradeoff),
        ("Clipping bound", clipping),
        ("How to read this", _explain("bands", "baseline", "auc", "lower_bound")),
        ("Runs", members_html),
        ("Guidance", _guidance_section(list(notes.values()))),
        ("Shared configuration", _config_section(shared)),
        ("Environment", _environment_section(env, trained_on=_devices(states))),
    ]
    return render_html(f"DP Explorer sweep report: {sweep.name}", sections,
                       subtitle=f"Sweep {sweep.id} · created {sweep.created} · generated {env['generated']}")


# ---------------------------------------------------------------------- several runs side by side
def comparison_report(store: RunStore, run_ids: Sequence[str],
                      *, thresholds: Mapping[str, float] | None = None) -> str:
    """The HTML report of runs ``run_ids`` side by side: what the Runs page's comparison shows, for a review.

    The comparison table, the overlaid ε, clipping, accuracy and ROC charts, each run's four
    checks, and the environment. Needs two or more distinct runs (DPExplorerError otherwise;
    RunNotFound for an unknown id).
    """
    from dpcore.views import tables as compare

    ids = list(dict.fromkeys(run_ids))
    if len(ids) < 2:
        raise DPExplorerError(f"a comparison report needs two or more runs, got {len(ids)}; "
                              "for one run, ask for its own report")
    records = [store.get(run_id) for run_id in ids]
    frame = compare.compare_runs(store, ids)
    data = compare.overlays(store, ids)
    table = compare.comparison_table(frame)
    env = environment(device=None)
    thresholds = dict(thresholds or {})

    table_rows = [(index, *row) for index, row in zip(table.index, table.itertuples(index=False), strict=True)]
    shared = f"Shared by all {len(ids)} runs: {', '.join(data.shared)}." if data.shared else ""
    runs_html = (_table(table_rows, ("", *table.columns), align_numbers=True)
                 + f'<p class="muted">{_esc(shared)} ε at each run\'s own δ; accuracies on held-out data; attack '
                   "AUC 0.5 = chance. A continuation counts the ε of its parent too.</p>")
    # A run without a target ε has no 'within budget' check: one column per check any run has.
    checks = {record.id: {c.name: c for c in summary_checks(record.config, record.summary, **thresholds)}
              for record in records}
    names = list(dict.fromkeys(name for by_name in checks.values() for name in by_name))
    check_rows = [(_esc(data.labels.get(record.id, record.name)),
                   *(_badge(checks[record.id][name].passed) if name in checks[record.id] else _badge(None)
                     for name in names), _esc(record.id)) for record in records]
    checks_html = (_table(check_rows, ("run", *names, "run id"), raw=True)
                   + '<p class="muted">The four checks of <code>python -m dpcore check</code>; each run\'s own '
                     "report lists the measured values and thresholds. A run without DP fails the ε checks by "
                     "design: it has no guarantee.</p>")
    _, charts = compare.overlay_charts(frame, data)
    figures = list(charts.values())
    missing_roc = f" No attack stored for: {', '.join(data.without_roc)}." if data.without_roc else ""
    sections: list[tuple[str, Content]] = [
        ("Runs", runs_html),
        ("Training and attack", Figures(figures, "ε spent per step (runs without DP are not drawn), share of "
                                                 "per-sample gradients clipped per step, test (solid) and train "
                                                 "(dashed) accuracy per epoch, and each run's loss-threshold "
                                                 "attack ROC." + missing_roc)),
        ("Checks", checks_html),
        ("How to read this", _explain("bands", "baseline", "auc", "clip_fraction")),
        ("Environment", _environment_section(env, trained_on=", ".join(sorted({r.device for r in records
                                                                                  if r.device})) or None)),
    ]
    subtitle = f"Runs {', '.join(ids)} · generated {env.get('generated', '')} by DP Explorer"
    return render_html(f"DP Explorer comparison: {len(ids)} runs", sections, subtitle=subtitle)


def _devices(states: Sequence[Any]) -> str:
    devices = sorted({m.run.device for m in states if m.run is not None and m.run.device})
    return ", ".join(devices) or "-"


# ---------------------------------------------------------------------- entry points
def report_for(store: RunStore, identifier: str) -> str:
    """The HTML report of a sweep (a stored sweep id), of runs side by side (run ids joined by commas,
    as in the Runs page's address ``?run=a,b``) or of one run."""
    from dpcore.jobs import sweep as sweeps

    if "," in identifier:
        return comparison_report(store, [part.strip() for part in identifier.split(",") if part.strip()])
    if sweeps.sweep_exists(store, identifier):
        return sweep_report(store, identifier)
    if sweeps.is_sweep_id(identifier):
        raise sweeps.SweepNotFound(f"no sweep {identifier!r} in {store.root}")
    return run_report(store, identifier)


def write_report(store: RunStore, identifier: str, path: str | Path) -> Path:
    """Write ``report_for(store, identifier)`` to ``path`` (UTF-8); return the path."""
    path = Path(path)
    text = report_for(store, identifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def report_filename(identifier: str) -> str:
    """A download file name for a report, e.g. 'dp-explorer-report-sw-20250101-120000-a1b2c3.html'."""
    return f"dp-explorer-report-{re.sub(r'[^A-Za-z0-9_.-]+', '_', identifier)}.html"


__all__ = [
    "ATTACK_FIELDS",
    "Figures",
    "ReportRun",
    "attack_rows",
    "comparison_report",
    "environment",
    "figures_html",
    "fmt",
    "render_html",
    "report_filename",
    "report_for",
    "run_report",
    "run_report_html",
    "summary_checks",
    "sweep_report",
    "write_report",
]
