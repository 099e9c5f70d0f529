"""The shell every DP Explorer HTML report shares: one self-contained page (CSS inline, plotly.js inlined
once with the first chart, nothing fetched), small HTML helpers and the sections several reports use
(dataset, configuration, guidance, checks, environment, explanations).

``dpcore.views.report`` (one run), ``report_sweep`` (a sweep) and ``report_compare`` (runs side by side)
build their sections from these.

>>> html = render_html("Example", [("Numbers", "<p>42</p>")])
>>> html.startswith("<!DOCTYPE html>") and "<p>42</p>" in html
True
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import importlib.metadata
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dpcore.config import TrainConfig
from dpcore.engine.data import DATASETS
from dpcore.engine.training import describe_device, resolve_device
from dpcore.errors import DPExplorerError
from dpcore.privacy.bands import format_number as fmt
from dpcore.privacy.caveats import EpsilonStatus
from dpcore.privacy.checks import Check, all_passed
from dpcore.privacy.guidance import guidance
from dpcore.views.cards import Card
from dpcore.views.explain import explain

if TYPE_CHECKING:
    import plotly.graph_objects as go

ENVIRONMENT_PACKAGES = ("torch", "opacus", "streamlit", "plotly", "numpy", "pandas", "scikit-learn")


CSS = """
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
.na { background: #eeeeee; color: #666; } .amber { background: #fdf0d5; color: #a65b00; }
.warning { color: #a65b00; } .info { color: #3d6b99; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
.card { border: 1px solid #e6e6e6; border-radius: 8px; padding: 8px 14px; min-width: 150px; }
.card .label { font-size: 12px; color: #6b6b6b; } .card .value { font-size: 22px; font-weight: 600; }
.card .sub { font-size: 12px; color: #6b6b6b; }
.figures { display: grid; gap: 8px 20px; } .figures.one { grid-template-columns: minmax(0, 1fr); }
.figures.two { grid-template-columns: repeat(2, minmax(0, 1fr)); } .figures > div { min-width: 0; }
.explain { background: #f6f8fb; border-left: 3px solid #9db4d3; padding: 6px 12px; font-size: 13.5px; margin: 8px 0; }
code { background: #f2f2f2; padding: 0 4px; border-radius: 3px; font-size: 12.5px; }
"""


def caveats_html(status: EpsilonStatus) -> str:
    """A warning paragraph per caveat of a run's ε (``dpcore.privacy.caveats``), '' when its ε is a plain guarantee."""
    if not status.caveats:
        return ""
    items = "".join(f"<li><strong>{esc(caveat.label)}</strong>: {esc(caveat.explanation)}</li>"
                    for caveat in status.caveats)
    return (f'<div class="explain warning"><p><strong>{esc(status.text(".2f"))}</strong>: this ε is not a '
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
            device = describe_device(resolve_device("auto"))
        except Exception:  # a report must not fail for want of a device description
            device = "unknown"
    info["device"] = device
    return info


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped (quotes too)."""
    return html_lib.escape(str(value), quote=True)


def md(text: str) -> str:
    """The little markdown ``dpcore.views.explain`` uses (**bold**, `code`) as HTML."""
    escaped = esc(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, *, raw: bool = False,
           align_numbers: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they must already be HTML). ``align_numbers``
    right-aligns cells that hold a number (for tables with a column per quantity)."""
    def cell(value: Any, tag: str) -> str:
        text = str(value) if raw else esc(value)
        numeric = align_numbers and re.fullmatch(r"[-+−]?[\d.,%∞ ±e+-]+", str(value) or "x") is not None
        return f"<{tag}{' class=num' if numeric and tag == 'td' else ''}>{text}</{tag}>"

    parts = ["<table>"]
    if header:
        parts.append("<tr>" + "".join(cell(h, "th") for h in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def badge(passed: bool | None, *, advisory: bool = False) -> str:
    """A check's verdict as a coloured badge: 'pass', 'fail', 'advice' (amber: an advisory check not met) or 'n/a'."""
    if passed is True:
        return '<span class="badge pass">pass</span>'
    if passed is False and advisory:
        return '<span class="badge amber">advice</span>'
    if passed is False:
        return '<span class="badge fail">fail</span>'
    return '<span class="badge na">n/a</span>'


def cards_html(cards: Sequence[Card]) -> str:
    """The summary cards (``dpcore.views.cards.summary_cards``) as a row of boxes; a card's help is its tooltip."""
    return '<div class="cards">' + "".join(
        f'<div class="card" title="{esc(card.help)}"><div class="label">{esc(card.label)}</div>'
        f'<div class="value">{esc(card.value)}</div><div class="sub">{esc(card.note)}</div></div>'
        for card in cards) + "</div>"


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
    body = [f"<h1>{esc(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="muted">{esc(subtitle)}</p>')
    for heading, parts in blocks:
        body.append(f"<h2>{esc(heading)}</h2>")
        for part in parts:
            if isinstance(part, str):
                body.append(part)
            elif part.figures:
                # explicit column counts: plotly sizes a chart from its cell while the page is still loading
                columns = "one" if len(part.figures) == 1 else "two"
                body.append(f'<div class="figures {columns}">'
                            + "".join(f"<div>{next(fragments)}</div>" for _ in part.figures) + "</div>")
                if part.caption:
                    body.append(f'<p class="muted">{esc(part.caption)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            + "".join(body) + "</main></body></html>\n")


def dataset_section(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The dataset and model table: name, title, description, member and non-member counts, DP fixes."""
    name = config.get("dataset", "?")
    spec = DATASETS.get(name)
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
    return html_table(rows)


def config_section(config: Mapping[str, Any]) -> str:
    """Every setting of ``config`` in ``TrainConfig`` field order, as a two-column table."""
    order = {f.name: i for i, f in enumerate(dataclasses.fields(TrainConfig))}  # the dataclass's order
    keys = sorted(config, key=lambda key: (order.get(key, len(order)), key))
    rows = [(key, fmt(config[key], "g") if isinstance(config[key], float) else
             ("-" if config[key] is None else config[key])) for key in keys if key != "extra" or config[key]]
    return html_table(rows, ("setting", "value"))


def guidance_section(notes: Sequence[Any]) -> str:
    """The guidance notes (``dpcore.privacy.guidance``) as a list, or a sentence saying there are none."""
    if not notes:
        return "<p>No warnings: the configuration follows the usual advice.</p>"
    return "<ul>" + "".join(f'<li class="{esc(n.level)}"><strong>{esc(n.level)}</strong> '
                            f"({esc(n.field)}): {esc(n.message)}</li>" for n in notes) + "</ul>"


def guidance_for(config: Mapping[str, Any], summary: Mapping[str, Any]) -> list[Any]:
    """The guidance notes for a stored config and summary ([] when the config no longer validates)."""
    n = summary.get("n_members")
    try:
        cfg = TrainConfig.from_dict(dict(config))
        return guidance(cfg, int(n)) if n else []
    except DPExplorerError:
        return []


def checks_section(checks: Sequence[Check]) -> str:
    """The privacy gate's checks as a table (badge, name, rule, measured value, threshold) and the verdict."""
    rows = [(badge(c.passed, advisory=c.advisory), f"<strong>{esc(c.name)}</strong>", esc(c.description),
             esc(c.value_text()), esc(fmt(c.threshold, "g"))) for c in checks]
    verdict = "all checks pass" if all_passed(list(checks)) else "at least one check fails or was not run"
    if any(c.advisory for c in checks):
        verdict += " (advisory checks, amber when not met, do not count)"
    return (html_table(rows, ("", "check", "rule", "measured", "threshold"), raw=True)
            + f'<p class="muted">Verdict: {esc(verdict)}. These are the checks of '
              "<code>python -m dpcore check</code> (the CI privacy gate).</p>")


def environment_section(env: Mapping[str, str], *, trained_on: str | None = None) -> str:
    """The environment table (``environment()``), with the device the run trained on when known."""
    rows = [("report generated", env.get("generated", ""))]
    if trained_on:
        rows.append(("trained on device", trained_on))
    rows.append(("report machine device", env.get("device", "")))
    rows += [("python", env.get("python", "")), ("platform", env.get("platform", ""))]
    rows += [(package, env.get(package, "")) for package in ENVIRONMENT_PACKAGES]
    return html_table(rows)


def explain_html(*topics: str) -> str:
    """The explanations of ``topics`` (``dpcore.views.explain.TOPICS``) as boxed HTML paragraphs."""
    return "".join(f'<div class="explain">{md(explain(topic))}</div>' for topic in topics)


__all__ = [
    "CSS",
    "ENVIRONMENT_PACKAGES",
    "Content",
    "Figures",
    "badge",
    "cards_html",
    "caveats_html",
    "checks_section",
    "config_section",
    "dataset_section",
    "environment",
    "environment_section",
    "esc",
    "explain_html",
    "figures_html",
    "fmt",
    "guidance_for",
    "guidance_section",
    "html_table",
    "md",
    "render_html",
]
