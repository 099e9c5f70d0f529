"""The summary cards of one run: ε spent, noise σ, test accuracy, attack AUC, clipped share.

ONE builder for the run view page (one ``st.metric`` per card) and the HTML report
(``dpcore.views.report``): ``summary_cards`` is a pure function from a ``StoredRun``
(``dpcore.store.records``) to a list of ``Card``. Each card has a big ``value``, a short grey
``note`` (the page's metric delta, the report's sub-line; five cards share a row, so it stays
short) and a longer ``help`` (a tooltip).

>>> from dpcore.store.schema import RunRecord
>>> record = RunRecord(id="r1", name="baseline", kind="train", group=None, status="done",
...                    config={"private": False}, summary={"test_accuracy": 0.8, "mia_auc": 0.61})
>>> [(card.label, card.value) for card in summary_cards(run=StoredRun.from_record(record))]
... # doctest: +NORMALIZE_WHITESPACE
[('ε spent', '∞'), ('Noise σ', 'none'), ('Test accuracy', '80.0%'), ('Attack AUC', '0.610'),
 ('Clipped gradients', 'none')]
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from dpcore.privacy.bands import format_big, format_number
from dpcore.privacy.caveats import epsilon_status
from dpcore.store.records import StoredRun
from dpcore.views.help import ATTACK_MESSAGES, CARD_HELP


@dataclass(frozen=True)
class Card:
    """One summary card: ``label`` (its title), ``value`` (the big number, formatted), ``note`` (a short grey
    line under it, '' for none) and ``help`` (a longer explanation for a tooltip, '' for none)."""

    label: str
    value: str
    note: str = ""
    help: str = ""


def _finite(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None."""
    return value if value is not None and math.isfinite(value) else None


def epsilon_card(run: StoredRun, *, final_epsilon: float | None = None) -> Card:
    """The ε card: ε spent at the run's δ, its accountant (and target) or the caveat that makes it no guarantee.

    ``final_epsilon`` overrides the stored ε (e.g. the last logged value); the value has two decimals below
    1000, then whole numbers and, from 10⁴, powers of ten (``format_big``), so it fits the card.
    """
    if not run.private:
        return Card("ε spent", "∞", help="No differential privacy: this baseline has no (ε, δ) guarantee.")
    delta = run.target_delta or 0.0
    accountant = str(run.accountant).upper()
    target = run.target_epsilon
    help_text = (f"{CARD_HELP['epsilon']} Computed at δ = {delta:g} by the {accountant} accountant over "
                 f"{run.steps} steps.")
    if target is not None:
        help_text += f" Target: {target:g}."
    note = f"{accountant}, target {target:g}" if target is not None else f"{accountant} accountant"
    epsilon = run.final_epsilon if final_epsilon is None else final_epsilon
    status = (run.epsilon_status if final_epsilon is None
              else epsilon_status(config=run.config, summary=run.summary, epsilon=final_epsilon))
    if status.caveats:  # not a plain guarantee: the mark (and proven bound) replaces the accountant note
        note = status.short_note(".2f")
        help_text += " " + " ".join(status.explanations())
    return Card(f"ε spent (δ = {delta:g})", format_big(epsilon, ".2f"), note, help_text)  # 3,266; 1.2 × 10⁶


def sigma_card(run: StoredRun) -> Card:
    """The noise card: σ (three decimals), with the clipping bound C as its note."""
    if not run.private:
        return Card("Noise σ", "none", help="The baseline adds no noise and clips no gradients.")
    clip_bound = f"C = {run.max_grad_norm:g}" if run.max_grad_norm is not None else ""
    how = (" Calibrated to reach the target ε after all epochs." if run.target_epsilon is not None
           else " Set by hand.")
    return Card("Noise σ", format_big(run.noise_multiplier, ".3f"), clip_bound, CARD_HELP["sigma"] + how)


def accuracy_card(run: StoredRun, *, test_accuracy: float | None = None, baseline: StoredRun | None = None) -> Card:
    """The accuracy card: test accuracy (a fraction, shown as %) and, for a private run, the gap to its
    non-private ``baseline`` in percentage points. ``test_accuracy`` overrides the stored one."""
    accuracy = _finite(run.test_accuracy if test_accuracy is None else test_accuracy)
    gap, gap_help = "", " No non-private baseline with the same data, model and seed is stored yet."
    if baseline is not None and run.private:
        base_acc = _finite(baseline.test_accuracy)
        if base_acc is not None and accuracy is not None:
            gap = f"{(accuracy - base_acc) * 100:+.1f} pp vs no DP"
            gap_help = (f" The non-private baseline (run {baseline.id}) reached {base_acc:.1%}; the gap, in "
                        "percentage points, is the accuracy privacy cost.")
        elif baseline.active:
            gap_help = f" The non-private baseline (run {baseline.id}) is still training."
    if not run.private:
        gap_help = ""
    return Card("Test accuracy", format_number(accuracy, ".1%"), gap, CARD_HELP["accuracy"] + gap_help)


def attack_card(run: StoredRun, *, attack: str | None = None) -> Card:
    """The attack card: the loss-threshold attack's AUC, or why there is none. ``attack`` is the attack's
    state ('done', 'running', 'stalled', 'failed' or 'none'); by default 'done' with an AUC, else 'none'."""
    mia_auc = _finite(run.mia_auc)
    if mia_auc is not None:
        tpr = _finite(run.mia_tpr)
        extra = f" At a 1 % false-positive rate it finds {tpr:.1%} of the members." if tpr is not None else ""
        return Card("Attack AUC", f"{mia_auc:.3f}", help=CARD_HELP["mia"] + extra)
    if attack == "running":
        return Card("Attack AUC", "…", help="The attack runs right after training; it takes a few seconds.")
    if attack == "failed":
        return Card("Attack AUC", "failed", help=f"The attack failed: {run.summary.get('mia_error', 'no message')}.")
    return Card("Attack AUC", "-", help=ATTACK_MESSAGES.get(attack or "none", ATTACK_MESSAGES["none"]))


def clip_card(run: StoredRun) -> Card:
    """The clipping card: share of per-sample gradients clipped in the last epoch ('none' without DP)."""
    bound = f" Clipping bound C = {run.max_grad_norm:g}." if run.max_grad_norm is not None else ""
    value = format_number(run.clip_fraction, ".0%") if run.private else "none"
    return Card("Clipped gradients", value, help=CARD_HELP["clip"] + bound)


def summary_cards(*, run: StoredRun, final_epsilon: float | None = None, test_accuracy: float | None = None,
                  baseline: StoredRun | None = None, attack: str | None = None) -> list[Card]:
    """The five summary cards of ``run``, in order: ε spent, noise σ, test accuracy, attack AUC, clipped share.

    ``final_epsilon`` and ``test_accuracy`` (a fraction) override the stored ones (e.g. the last logged
    values of a run whose summary lacks them); ``baseline`` is the linked non-private run or None;
    ``attack`` is the attack's state for the AUC card ('running', 'stalled', 'failed', 'none'; default:
    from the summary). Values are formatted text ('-' when unknown, '∞' for ε without DP).
    """
    return [
        epsilon_card(run, final_epsilon=final_epsilon),
        sigma_card(run),
        accuracy_card(run, test_accuracy=test_accuracy, baseline=baseline),
        attack_card(run, attack=attack),
        clip_card(run),
    ]


#: Inline style of the HTML cards: one bordered box per card in a row that wraps, close to a framed ``st.metric``.
#: Colours are the page's text colour at lower opacity, so the cards follow a light or a dark theme.
CARDS_STYLE = ("display:flex;flex-wrap:wrap;gap:1rem;margin:0.25rem 0 1rem 0")
CARD_STYLE = ("flex:1 1 9rem;min-width:9rem;border:1px solid rgba(128,128,128,0.35);border-radius:0.5rem;"
              "padding:0.75rem 1rem")


def cards_html(cards: Sequence[Card]) -> str:
    """``cards`` as ONE line of HTML (bordered boxes in a row; each card's help is its tooltip, all text escaped).

    The live view draws its cards this way: one Markdown element instead of a ``st.metric`` per card, which
    costs a watching browser a third as much on every redraw (``bench/bench_live_view.py``). Returns a
    ``<div>`` with no blank line, so that Markdown passes it through as one HTML block.
    """
    boxes = []
    for card in cards:
        tip = f' title="{html.escape(card.help, quote=True)}"' if card.help else ""
        note = (f'<div style="font-size:0.8rem;opacity:0.65">{html.escape(card.note)}</div>' if card.note else "")
        boxes.append(f'<div style="{CARD_STYLE}"{tip}>'
                     f'<div style="font-size:0.875rem;opacity:0.8">{html.escape(card.label)}</div>'
                     f'<div style="font-size:1.75rem;line-height:1.3">{html.escape(card.value)}</div>{note}</div>')
    return f'<div class="dpx-cards" style="{CARDS_STYLE}">{"".join(boxes)}</div>'


__all__ = ["CARDS_STYLE", "CARD_STYLE", "Card", "accuracy_card", "attack_card", "cards_html", "clip_card",
           "epsilon_card", "sigma_card", "summary_cards"]
