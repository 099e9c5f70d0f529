"""HTML reports: they render, carry the run's numbers, checks, guidance and versions, and open offline."""

from __future__ import annotations

import importlib.metadata
import shutil
from html.parser import HTMLParser

import pytest

from dpcore.cli import main
from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.jobs import sweep as sweeps
from dpcore.privacy.checks import run_checks
from dpcore.privacy.guidance import guidance
from dpcore.store.runs import RunStore
from dpcore.views import report

SPEC = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(3.0,), max_grad_norms=(1.0,),
                        seeds=(0,))


class Page(HTMLParser):
    """Text, script tags and external references of an HTML document."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.external: list[str] = []
        self.tables = 0
        self.feed(text)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "table":
            self.tables += 1
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(f"<{tag} {name}={value}>")

    def handle_data(self, data):
        if self.lasttag not in ("script", "style"):
            self.chunks.append(data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A sweep of one private run and its baseline, trained once (synthetic, 1 epoch) without the queue."""
    root = tmp_path_factory.mktemp("report-runs")
    store = RunStore(root)
    sweep = sweeps.save_sweep(store, SPEC)
    ids = {}
    for member in sweeps.expand(sweep.spec):
        run_id = store.create_run(member.config, group=sweep.id)
        sweeps.train_member(store, run_id)
        ids["private" if member.config.private else "baseline"] = run_id
    store.close()
    return root, sweep.id, ids


@pytest.fixture
def store(trained, tmp_path):
    root, _, _ = trained
    shutil.copytree(root, tmp_path / "runs", dirs_exist_ok=True)
    return RunStore(tmp_path / "runs")


def test_run_report_contains_the_runs_numbers(trained, store):
    _, sweep_id, ids = trained
    record = store.get(ids["private"])
    baseline = store.get(ids["baseline"])
    html = report.run_report(store, ids["private"])
    page = Page(html)
    summary = record.summary
    assert f"{summary['final_epsilon']:.4f}" in page.text  # ε spent
    assert f"{summary['noise_multiplier']:.4f}" in page.text  # σ
    assert "δ 1e-05" in page.text and "accountant RDP" in page.text
    assert f"{summary['test_accuracy']:.2%}" in page.text
    assert f"{baseline.summary['test_accuracy']:.2%}" in page.text  # the baseline it is compared with
    assert baseline.id in page.text
    assert f"{summary['mia_auc']:.3f}" in page.text and "mia_tpr_at_1pct_fpr" in page.text
    assert "mia_epsilon_lower" in page.text
    for check in run_checks(record.config, summary):
        assert check.name in page.text
    assert "pass" in page.text
    cfg = TrainConfig.from_dict(record.config)
    for note in guidance(cfg, summary["n_members"]):
        assert " ".join(note.message.split()) in page.text
    for package in ("torch", "opacus", "streamlit", "plotly"):
        assert importlib.metadata.version(package) in page.text
    assert "python" in page.text and "report generated" in page.text
    assert "synthetic" in page.text and "Synthetic embeddings" in page.text and sweep_id in page.text
    # the proven limit of any attack, beside the attack's own TPR at 1 % FPR, and on both ROCs
    from dpcore.engine.checkpoint import checkpoint_history
    from dpcore.privacy import tradeoff
    from dpcore.views.explain import attack_bound_sentence

    bound = tradeoff.tradeoff_for_run(summary=summary, config=record.config,
                                      history=checkpoint_history(store.artifacts_path(record.id)))
    assert not bound.unlimited and bound.headline() < 1
    assert attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=summary["mia_tpr_at_1pct_fpr"]) in page.text
    assert html.count("most any attacker can achieve at ε") == 2 and html.count("impossible for any attack") == 2


def test_report_opens_offline_with_plotly_inlined_once(store, trained):
    _, _, ids = trained
    html = report.run_report(store, ids["private"])
    page = Page(html)
    assert page.external == []  # no script, stylesheet or image from the network
    assert all(not script.get("src") for script in page.scripts)
    assert html.count("* plotly.js v") == 1  # the library once, with the first figure
    assert html.count("Plotly.newPlot") >= 4  # ε, clipping, loss, accuracy, ROC charts
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_baseline_report_says_there_is_no_guarantee(store, trained):
    _, _, ids = trained
    page = Page(report.run_report(store, ids["baseline"]))
    assert "No privacy guarantee" in page.text and "non-private baseline" in page.text
    assert "Any attack: no proven limit at 1 % false alarms (no DP guarantee)" in page.text
    assert "fail" in page.text  # the ε checks fail by design


def test_sweep_report_lists_every_cell_and_the_frontier(store, trained):
    _, sweep_id, ids = trained
    html = report.report_for(store, sweep_id)
    page = Page(html)
    assert page.external == [] and html.count("* plotly.js v") == 1
    for member in sweeps.expand(SPEC):
        assert member.key in page.text
    for run_id in ids.values():
        assert run_id in page.text
    assert "2 of 2 runs done" in page.text
    private = store.get(ids["private"]).summary
    assert f"{private['test_accuracy']:.1%}" in page.text and f"{private['final_epsilon']:.3f}" in page.text
    assert "Tradeoff" in page.text and "Clipping bound" in page.text
    assert html.count("Plotly.newPlot") == 6  # accuracy, AUC, TPR, lower bounds, two heatmaps
    assert "torch" in page.text and importlib.metadata.version("opacus") in page.text


def test_report_escapes_names(store, trained):
    _, _, ids = trained
    run = report.ReportRun.from_record(store, store.get(ids["private"]))
    run.name = "<script>alert(1)</script>"
    html = report.run_report_html(run, env={"generated": "now", "device": "cpu"})
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_cli_report_writes_the_file_and_rejects_unknown_ids(store, trained, tmp_path, capsys):
    _, sweep_id, ids = trained
    target = tmp_path / "out" / "report.html"
    # a missing output folder is named, not created silently (issue 13)
    assert main(["report", ids["private"], "-o", str(target), "--runs-dir", str(store.root)]) == 2
    assert "does not exist" in capsys.readouterr().err and not target.parent.exists()
    target.parent.mkdir()
    assert main(["report", ids["private"], "-o", str(target), "--runs-dir", str(store.root)]) == 0
    assert target.is_file() and ids["private"] in Page(target.read_text()).text
    assert main(["report", sweep_id, "-o", str(tmp_path / "sweep.html"), "--runs-dir", str(store.root)]) == 0
    capsys.readouterr()
    assert main(["report", "no-such-run", "--runs-dir", str(store.root)]) == 2
    assert main(["report", "sw-20000101-000000-000000", "--runs-dir", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "no run with id 'no-such-run'" in err and "no sweep" in err


def test_comparison_report_puts_the_runs_side_by_side(store, trained, tmp_path):
    _, _, ids = trained
    private, baseline = store.get(ids["private"]), store.get(ids["baseline"])
    html = report.report_for(store, f"{ids['private']}, {ids['baseline']}")  # as in the Runs page's ?run=a,b
    page = Page(html)
    assert page.text.startswith("DP Explorer comparison: 2 runs") and page.external == []
    # ε, clipping, accuracy, the attack per epoch (vulnerability), ROC
    assert html.count("* plotly.js v") == 1 and html.count("Plotly.newPlot") == 5
    assert "Vulnerability over training" in html
    assert f"{private.summary['final_epsilon']:.2f}" in page.text and "∞ (no DP)" in page.text
    assert f"{private.summary['test_accuracy'] * 100:.1f} %" in page.text
    assert f"{baseline.summary['test_accuracy'] * 100:.1f} %" in page.text
    # one checks row per run; the baseline has no target, so 'within budget' is n/a for it, not a shifted column
    checks_table = html[html.index("<h2>Checks</h2>"):]
    checks_table = checks_table[:checks_table.index("</table>")]
    rows = checks_table.split("<tr>")[2:]
    # four gate checks and the advisory clip-band check (n/a for the baseline, which does not clip)
    assert len(rows) == 2 and all(row.count('class="badge') == 5 for row in rows)
    assert "badge na" in rows[1] and ids["baseline"] in rows[1]
    assert main(["report", f"{ids['private']},{ids['baseline']}", "-o", str(tmp_path / "cmp.html"),
                 "--runs-dir", str(store.root)]) == 0
    with pytest.raises(DPExplorerError, match="two or more runs"):
        report.comparison_report(store, [ids["private"], ids["private"]])


def test_attack_rows_name_each_attack_once():
    summary = {"mia_auc": 0.61, "lira_auc": 0.7, "lira_tpr_at_1pct_fpr": 0.05, "lira_online_auc": 0.7,
               "lira_online_tpr_at_1pct_fpr": 0.05, "rmia_auc": 0.72, "loss_auc": None, "attack_models": 16,
               "empirical_epsilon_lower": 1.2, "empirical_epsilon_attack": "rmia"}
    rows = {key: (meaning, value) for key, meaning, value in report.attack_rows(summary)}
    assert rows["lira_online_auc"] == ("attack lab: LiRA (online) AUC", "0.700")
    assert rows["lira_online_tpr_at_1pct_fpr"] == ("attack lab: LiRA (online) TPR at 1 % FPR", "5.0%")
    assert rows["rmia_auc"] == ("attack lab: RMIA AUC", "0.720")
    assert "lira_auc" not in rows and "lira_tpr_at_1pct_fpr" not in rows  # aliases of the online numbers
    assert "loss_auc" not in rows  # not run
    assert list(rows)[:2] == ["mia_auc", "empirical_epsilon_lower"]  # the known fields come first
