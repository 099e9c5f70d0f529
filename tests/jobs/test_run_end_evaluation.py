"""One evaluation pass at a run's end (issue 10): the trainer's last eval pass (``RunResult.final_logits``) feeds
the last epoch row's attack numbers, the run's loss attack (summary, roc.json) and the per-example outputs
(example_outputs.npz, the group table), with the same numbers as evaluating the model three times."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from dpcore.config import TrainConfig
from dpcore.engine import membership
from dpcore.engine import training as engine
from dpcore.jobs import group_results as groups
from dpcore.jobs.training import evaluate_membership, record_result, run_training
from dpcore.store.artifacts import ROC_FILE

FAST = dict(device="cpu", seed=0, reproducible=True)
CASES = [TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=2, **FAST),
         TrainConfig(dataset="digits", private=False, epochs=1, **FAST)]

pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


class RunEndForwards:
    """Counts the examples each module forwards in eval mode from the moment ``_finish`` starts (a global hook)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[torch.nn.Module, int]] = []  # keeps the modules alive: ``is`` stays exact
        self.on = False
        finish = engine._finish

        def counted_finish(plan, progress):
            self.on = True
            return finish(plan, progress)

        monkeypatch.setattr(engine, "_finish", counted_finish)

    def hook(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.on and not module.training and args and isinstance(args[0], torch.Tensor):
            self.calls.append((module, len(args[0])))

    def rows(self, model: torch.nn.Module) -> int:
        """Examples forwarded through ``model`` itself (not its submodules) since ``_finish`` started."""
        return sum(rows for module, rows in self.calls if module is model)


def _stored_outputs(store, run_id: str) -> dict[str, np.ndarray]:
    with np.load(store.artifacts_path(run_id) / groups.OUTPUTS_FILE, allow_pickle=False) as kept:
        return {name: kept[name] for name in kept.files}


@pytest.mark.parametrize("cfg", CASES, ids=["synthetic-dp", "digits-no-dp"])
def test_the_run_end_evaluates_once_with_the_three_pass_numbers(store, monkeypatch, cfg):
    counter = RunEndForwards(monkeypatch)
    one_pass = store.create_run(cfg)
    handle = torch.nn.modules.module.register_module_forward_hook(counter.hook)
    try:
        result, attack = run_training(cfg, store=store, run_id=one_pass)
        run_end_rows = counter.rows(result.model)
        # The same result without the kept pass: what the run end did before (attack and outputs evaluate again).
        three_pass = store.create_run(cfg)
        before = counter.rows(result.model)
        old_attack = record_result(store, three_pass, dataclasses.replace(result, final_logits=None))
        fallback_rows = counter.rows(result.model) - before
    finally:
        handle.remove()
    data = result.data
    n_examples = len(data.x_members) + len(data.x_non_members)
    assert attack is not None and old_attack is not None
    assert run_end_rows == n_examples  # members and non-members once each: one pass for all three consumers
    assert fallback_rows == 2 * n_examples  # the counter sees the passes the kept logits save

    # the last epoch row: as _finish computed it before (two example_losses passes of the clean model)
    old_row = membership.loss_attack_metrics(
        membership.example_losses(result.model, data.x_members, data.y_members).losses,
        membership.example_losses(result.model, data.x_non_members, data.y_non_members).losses)
    last = store.epochs(one_pass).iloc[-1]
    assert [last[column] for column in membership.MIA_COLUMNS] == [old_row[column] for column in old_row]
    # the run's attack: summary numbers and roc.json, bit for bit
    new_summary, old_summary = store.get(one_pass).summary, store.get(three_pass).summary
    for key in ("mia_auc", "mia_tpr_at_1pct_fpr", "mia_advantage", "mia_status"):
        assert new_summary[key] == old_summary[key], key
    assert new_summary["mia_auc"] == last["mia_auc"]
    assert np.array_equal(attack.member_scores, old_attack.member_scores)
    assert np.array_equal(attack.non_member_scores, old_attack.non_member_scores)
    roc = [json.loads((store.artifacts_path(run) / ROC_FILE).read_text()) for run in (one_pass, three_pass)]
    assert roc[0] == roc[1]
    # example_outputs.npz contents and the group table built from them
    new_outputs, old_outputs = _stored_outputs(store, one_pass), _stored_outputs(store, three_pass)
    assert new_outputs.keys() == old_outputs.keys()
    for name in new_outputs:
        assert new_outputs[name].dtype == old_outputs[name].dtype, name
        assert np.array_equal(new_outputs[name], old_outputs[name]), name
    pd.testing.assert_frame_equal(groups.group_report(store, one_pass, data=data).table,
                                  groups.group_report(store, three_pass, data=data).table)


def test_logits_of_other_data_are_not_used(monkeypatch):
    """A RunResult whose kept pass does not fit its data (changed after training) is evaluated again."""
    cfg = CASES[0].replace(epochs=1)
    result = engine.train(cfg)
    assert result.final_logits is not None and result.final_logits.fits(result.data)
    shuffled = torch.randperm(len(result.data.y_members), generator=torch.Generator().manual_seed(0))
    other = dataclasses.replace(result.data, x_members=result.data.x_members[shuffled],
                                y_members=result.data.y_members[shuffled])
    assert not result.final_logits.fits(other)
    evaluated = []
    real = membership.eval_logits
    monkeypatch.setattr(membership, "eval_logits", lambda *a, **k: evaluated.append(1) or real(*a, **k))
    attack = evaluate_membership(dataclasses.replace(result, data=other))
    assert len(evaluated) == 2  # members and non-members, through the model
    assert evaluate_membership(result).auc == result.epochs["mia_auc"].iloc[-1]  # the kept pass, no forward
    assert len(evaluated) == 2
    fresh = membership.model_attack_metrics(result.model, other)
    assert attack.auc == pytest.approx(fresh["mia_auc"], abs=1e-12)
