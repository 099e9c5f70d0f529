"""Tests for dpcore.views.cards: the one summary-cards builder of the run view and the HTML report."""

from __future__ import annotations

from dpcore.store.records import StoredRun
from dpcore.store.runs import RunRecord
from dpcore.views import report
from dpcore.views.cards import Card, summary_cards
from dpcore.views.help import CARD_HELP

PRIVATE_CONFIG = {"dataset": "digits", "private": True, "target_epsilon": 3.0, "target_delta": 1e-5,
                  "max_grad_norm": 1.0, "accountant": "rdp", "poisson_sampling": True, "reproducible": False}
PRIVATE_SUMMARY = {"final_epsilon": 2.9, "noise_multiplier": 1.234, "test_accuracy": 0.82, "mia_auc": 0.55,
                   "mia_tpr_at_1pct_fpr": 0.02, "final_clip_fraction": 0.7, "steps": 120}


def stored(run_id: str, config: dict, summary: dict, status: str = "done") -> StoredRun:
    return StoredRun.from_record(RunRecord(id=run_id, name=run_id, kind="train", group=None, status=status,
                                           config=dict(config), summary=dict(summary)))


def test_private_run_cards_name_the_accountant_target_and_baseline_gap():
    baseline = stored("base", {"dataset": "digits", "private": False}, {"test_accuracy": 0.90})
    cards = summary_cards(run=stored("dp", PRIVATE_CONFIG, PRIVATE_SUMMARY), baseline=baseline)
    assert [card.label for card in cards] == ["ε spent (δ = 1e-05)", "Noise σ", "Test accuracy", "Attack AUC",
                                              "Clipped gradients"]
    epsilon, sigma, accuracy, attack, clipped = cards
    assert (epsilon.value, epsilon.note) == ("2.90", "RDP, target 3")
    assert "over 120 steps" in epsilon.help and epsilon.help.startswith(CARD_HELP["epsilon"])
    assert (sigma.value, sigma.note) == ("1.234", "C = 1")
    assert accuracy.value == "82.0%" and accuracy.note == "-8.0 pp vs no DP" and "run base" in accuracy.help
    assert attack.value == "0.550" and "2.0% of the members" in attack.help
    assert clipped.value == "70%" and "C = 1." in clipped.help


def test_overrides_and_attack_states():
    run = stored("dp", PRIVATE_CONFIG, {**PRIVATE_SUMMARY, "mia_auc": None, "mia_error": "out of memory"})
    cards = summary_cards(run=run, final_epsilon=1.5, test_accuracy=0.5, attack="failed")
    assert cards[0].value == "1.50" and cards[2].value == "50.0%"
    assert cards[3].value == "failed" and "out of memory" in cards[3].help
    assert summary_cards(run=run, attack="running")[3].value == "…"
    assert summary_cards(run=run)[3].value == "-"  # no AUC and no state given: no attack


def test_non_private_run_has_no_guarantee_noise_or_clipping():
    cards = summary_cards(run=stored("base", {"private": False}, {"test_accuracy": 0.8, "mia_auc": 0.61}))
    assert [(card.label, card.value) for card in cards] == [
        ("ε spent", "∞"), ("Noise σ", "none"), ("Test accuracy", "80.0%"), ("Attack AUC", "0.610"),
        ("Clipped gradients", "none")]
    assert cards[2].note == "" and all(isinstance(card, Card) for card in cards)


def test_caveated_epsilon_replaces_the_accountant_note():
    """A GDP ε is no proven guarantee: the note carries the caveat instead of 'GDP, target 3'."""
    config = {**PRIVATE_CONFIG, "accountant": "gdp"}
    card = summary_cards(run=stored("gdp", config, {**PRIVATE_SUMMARY, "accountant": "gdp"}))[0]
    assert card.note != "GDP, target 3" and card.note


def test_report_summary_shows_the_same_cards():
    run = report.ReportRun(id="dp", name="dp", status="done", config=dict(PRIVATE_CONFIG),
                           summary=dict(PRIVATE_SUMMARY))
    html = report.run_report_html(run, env={"generated": "now"})
    for card in summary_cards(run=run.stored()):
        assert f'<div class="label">{card.label}</div><div class="value">{card.value}</div>' in html
