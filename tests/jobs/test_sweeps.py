"""Sweeps: grid expansion, bookkeeping across restarts (nothing runs twice), the tradeoff data and their charts."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from dpcore.cli import main
from dpcore.config import TrainConfig
from dpcore.errors import ConfigError
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.queue import JobQueue
from dpcore.jobs.speed_history import recent_costs
from dpcore.store.runs import CANCELLED, DONE, FAILED, INTERRUPTED, RunStore
from dpcore.views import frontier as frontiers
from dpcore.views import plots
from dpcore.views.progress import parse_time

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
BASE = TrainConfig(dataset="synthetic", epochs=1)
SPEC = sweeps.SweepSpec(base=BASE, epsilons=(1.0, 4.0), max_grad_norms=(0.5, 1.0), seeds=(0, 1))


@pytest.fixture
def fake_training(monkeypatch):
    """Replace training in sweep jobs by a recorder: a member 'trains' instantly (or waits for ``gate``)."""
    class Recorder:
        def __init__(self) -> None:
            self.keys: list[str] = []
            self.gate = threading.Event()
            self.gate.set()
            self.lock = threading.Lock()

        def __call__(self, store, run_id, *, should_stop=None):
            with self.lock:
                self.keys.append(sweeps.cell_key(store.get(run_id).config))
            while not self.gate.wait(0.01):
                if should_stop is not None and should_stop():
                    return None
            return None

    recorder = Recorder()
    monkeypatch.setattr(sweeps, "train_member", recorder)
    return recorder


@pytest.fixture
def queue(store):
    queue = JobQueue(store, max_pending=64, executor="thread")  # train_member is monkeypatched in this process
    yield queue
    assert queue.shutdown(timeout=TIMEOUT)


def wait_settled(store: RunStore, sweep_id: str, timeout: float = TIMEOUT) -> sweeps.SweepProgress:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = sweeps.sweep_progress(store, sweep_id)
        if progress.status != "running":
            return progress
        time.sleep(0.02)
    raise AssertionError(f"sweep {sweep_id} still running after {timeout} s: {progress}")


# ---------------------------------------------------------------------- spec and expansion
def test_expand_covers_the_grid_once_with_one_baseline_per_seed():
    members = sweeps.expand(SPEC)
    keys = [m.key for m in members]
    assert len(members) == SPEC.n_runs == 2 * 2 * 2 + 2
    assert len(set(keys)) == len(keys)
    private = [m.config for m in members if m.config.private]
    assert {(c.target_epsilon, c.max_grad_norm, c.seed) for c in private} == {
        (e, c, s) for e in (1.0, 4.0) for c in (0.5, 1.0) for s in (0, 1)}
    baselines = [m.config for m in members if not m.config.private]
    assert sorted(c.seed for c in baselines) == [0, 1]
    assert all(c.target_epsilon is None and c.epochs == 1 for c in baselines)
    assert all(sweeps.cell_key(m.config) == m.key for m in members)


def test_spec_normalises_and_round_trips():
    spec = sweeps.SweepSpec(base=BASE, epsilons=(4, 1, 4), max_grad_norms=(1,), seeds=(1, 0, 1))
    normal = spec.normalized()
    assert normal.epsilons == (1.0, 4.0) and normal.seeds == (0, 1)
    assert sweeps.SweepSpec.from_dict(normal.to_dict()) == normal
    assert "ε 1, 4" in normal.describe() and "(6 runs)" in normal.describe()


@pytest.mark.parametrize(("changes", "fragment"), [
    (dict(epsilons=(), include_baseline=False), "has no runs"),
    (dict(epsilons=(-1.0,)), "finite number > 0"),
    (dict(max_grad_norms=()), "max_grad_norms needs at least one value"),
    (dict(seeds=(1.5,)), "whole number"),
    (dict(base=TrainConfig(dataset="synthetic", noise_multiplier=1.0)), "remove noise_multiplier"),
    (dict(base=TrainConfig(dataset="synthetic", epochs=0)), "epochs must be between"),
    (dict(epsilons=tuple(range(1, 200)), seeds=(0, 1, 2)), "more than the 500 allowed"),
])
def test_bad_specs_raise_config_error(changes, fragment):
    spec = sweeps.SweepSpec(**{**dict(base=BASE, epsilons=(1.0,), seeds=(0,)), **changes})
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        spec.validate()


def test_cell_key_survives_the_resolved_config_a_finished_run_stores():
    member = sweeps.expand(SPEC)[0]
    assert sweeps.cell_key(member.config.resolve().to_dict()) == member.key


def test_estimate_uses_measured_step_times(store):
    guess = sweeps.estimate(SPEC, store=store, calibrate=False)
    assert guess.n_runs == 10 and guess.steps_per_run == 13  # 800 members / batch 64
    assert "guess" in guess.basis and guess.seconds > 0
    run_id = store.create_run(BASE.replace(target_epsilon=1.0, model="mlp"))
    store.update_summary(run_id, ms_per_step=1000.0)
    store.set_status(run_id, DONE)
    measured = sweeps.estimate(SPEC, store=store, calibrate=False)
    assert "from 1 finished" in measured.basis and measured.seconds > 8 * 13  # 8 private runs x 13 steps x 1 s


# ---------------------------------------------------------------------- bookkeeping
def test_sweep_record_survives_reopening_the_store(store, tmp_path):
    sweep = sweeps.save_sweep(store, SPEC, name="grid")
    reopened = RunStore(tmp_path / "runs")
    assert sweeps.load_sweep(reopened, sweep.id).spec == SPEC.normalized()
    assert [s.id for s in sweeps.list_sweeps(reopened)] == [sweep.id]
    assert sweeps.sweep_progress(reopened, sweep.id).counts[sweeps.MISSING] == SPEC.n_runs
    with pytest.raises(sweeps.SweepNotFound):
        sweeps.load_sweep(reopened, "sw-20000101-000000-000000")


def test_resume_queues_only_cells_that_are_not_done(store, queue, fake_training):
    sweep = sweeps.save_sweep(store, SPEC)
    members = sweeps.expand(sweep.spec)
    outcome = {members[0].key: DONE, members[1].key: DONE, members[2].key: INTERRUPTED,
               members[3].key: CANCELLED, members[4].key: FAILED}
    for member in members:
        if member.key in outcome:
            run_id = store.create_run(member.config, group=sweep.id)
            store.set_status(run_id, outcome[member.key])
    before = {r.id for r in store.records(group=sweep.id)}

    queued = sweeps.resume_sweep(queue, sweep.id, window=None)
    progress = wait_settled(store, sweep.id)

    expected = {m.key for m in members} - {members[0].key, members[1].key, members[4].key}
    assert sorted(fake_training.keys) == sorted(expected)  # done and failed cells were not run
    assert len(queued) == len(expected)
    assert progress.counts[DONE] == len(members) - 1 and progress.counts[FAILED] == 1
    assert progress.status == "failed"
    # the old attempts are kept; every cell that was not done got exactly one new run
    after = store.records(group=sweep.id)
    assert before < {r.id for r in after} and len(after) == len(before) + len(expected)

    fake_training.keys.clear()
    assert sweeps.resume_sweep(queue, sweep.id, window=None) == []  # nothing left but the failed cell
    assert sweeps.resume_sweep(queue, sweep.id, retry_failed=True, window=None) != []
    assert wait_settled(store, sweep.id).status == "done"
    assert fake_training.keys == [members[4].key]


def test_restart_of_the_process_resumes_without_running_anything_twice(tmp_path, store, queue, fake_training):
    """A child process starts the sweep and dies mid-way; the next process resumes only the unfinished cells."""
    sweep = sweeps.save_sweep(store, SPEC)
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from dpcore.jobs import sweep as sweeps
        from dpcore.jobs.queue import JobQueue
        from dpcore.store.runs import RunStore
        calls = []
        def fake(store, run_id, *, should_stop=None):
            calls.append(run_id)
            if len(calls) > 3:
                time.sleep(60)  # the 4th member hangs: the process dies while it is 'running'
        sweeps.train_member = fake
        store = RunStore({str(store.root)!r})
        queue = JobQueue(store, max_pending=64, executor="thread")  # train_member is patched in this process
        sweeps.top_up(queue, {sweep.id!r}, window=None)
        while sum(m.state == "done" for m in sweeps.member_states(store, {sweep.id!r})) < 3 or len(calls) < 4:
            time.sleep(0.01)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    reopened = RunStore(store.root)  # what the app does when it starts again
    states = {m.key: m.state for m in sweeps.member_states(reopened, sweep.id)}
    done_before = {key for key, state in states.items() if state == DONE}
    assert len(done_before) == 3 and set(states.values()) == {DONE, INTERRUPTED}
    assert sweeps.sweep_progress(reopened, sweep.id).status == "incomplete"

    sweeps.resume_sweep(queue, sweep.id)  # default window: finished members queue the rest
    assert wait_settled(store, sweep.id).status == "done"
    assert not done_before & set(fake_training.keys)  # nothing done was run again
    assert sorted(fake_training.keys) == sorted(set(states) - done_before)  # the rest exactly once


def test_app_start_continues_interrupted_sweeps_but_not_cancelled_or_finished_ones(store, queue, fake_training):
    members = sweeps.expand(SPEC)
    interrupted = sweeps.save_sweep(store, SPEC, name="interrupted")  # a process died mid-way
    for member, status in zip(members[:3], (DONE, INTERRUPTED, CANCELLED), strict=True):
        store.set_status(store.create_run(member.config, group=interrupted.id), status)
    stopped = sweeps.save_sweep(store, SPEC, name="cancelled by the user")
    sweeps.cancel_sweep(queue, stopped.id)
    finished = sweeps.save_sweep(store, dataclasses.replace(SPEC, epsilons=(2.0,), max_grad_norms=(1.0,), seeds=(0,)))
    for member in sweeps.expand(finished.spec):
        store.set_status(store.create_run(member.config, group=finished.id), DONE)

    resumed = sweeps.resume_after_restart(queue, window=None)
    assert set(resumed) == {interrupted.id}
    progress = wait_settled(store, interrupted.id)
    # the interrupted and never-queued cells ran once each; the done and the user-cancelled cell did not
    assert sorted(fake_training.keys) == sorted(m.key for m in members[1:2] + members[3:])
    assert progress.counts[DONE] == len(members) - 1 and progress.counts[CANCELLED] == 1
    assert sweeps.sweep_progress(store, stopped.id).status == "cancelled"
    assert not store.records(group=stopped.id)
    assert sweeps.resume_after_restart(queue, window=None) == {}  # nothing left that a restart stopped


def test_window_limits_queued_members_and_finished_ones_queue_the_next(store, queue, fake_training):
    fake_training.gate.clear()
    sweep = sweeps.submit_sweep(queue, SPEC, window=2)
    assert len(store.records(group=sweep.id)) == 2  # the rest wait for these
    fake_training.gate.set()
    assert wait_settled(store, sweep.id).status == "done"
    assert sorted(fake_training.keys) == sorted(m.key for m in sweeps.expand(SPEC))
    assert len(store.records(group=sweep.id)) == SPEC.n_runs  # one run per cell, none twice


def test_cancel_stops_the_sweep_and_resume_finishes_it(store, queue, fake_training):
    fake_training.gate.clear()
    sweep = sweeps.submit_sweep(queue, SPEC, window=3)
    deadline = time.monotonic() + TIMEOUT
    while not fake_training.keys and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sweeps.cancel_sweep(queue, sweep.id) == 3
    fake_training.gate.set()
    progress = wait_settled(store, sweep.id)
    assert progress.status == "cancelled" and progress.done == 0
    assert len(store.records(group=sweep.id)) == 3  # no member queued more after the cancel

    sweeps.resume_sweep(queue, sweep.id)
    assert wait_settled(store, sweep.id).status == "done"
    assert len([r for r in store.records(group=sweep.id) if r.status == DONE]) == SPEC.n_runs


def test_real_members_store_attack_numbers_and_a_lower_bound(store, queue):
    spec = sweeps.SweepSpec(base=BASE, epsilons=(2.0,), max_grad_norms=(1.0,), seeds=(0,))
    sweep = sweeps.submit_sweep(queue, spec)
    assert wait_settled(store, sweep.id, timeout=120).status == "done"
    for record in store.records(group=sweep.id):  # a member is done once stored; its job ends after the bound
        queue.wait(record.id, TIMEOUT)
    runs = {bool(r.config["private"]): r for r in store.records(group=sweep.id)}
    private, baseline = runs[True], runs[False]
    assert private.summary["final_epsilon"] == pytest.approx(2.0, rel=0.02)
    for record in (private, baseline):
        assert 0.0 <= record.summary["mia_auc"] <= 1.0 and record.summary["mia_status"] == "done"
    assert private.summary["mia_epsilon_lower"] >= 0.0 and "mia_epsilon_lower" not in baseline.summary
    # the job's end (after the attack and the bound): the whole wall time the next estimate is built from
    for record in (private, baseline):
        assert parse_time(record.started) <= parse_time(record.summary["job_ended"])
        assert record.summary["warm_ms_per_step"] > 0  # its steps after the first (a cold run's cost)
    # the set-up (data, noise calibration) and the first step are left out of the warm figure
    assert private.summary["warm_ms_per_step"] < private.summary["ms_per_step"]
    costs = recent_costs(store, dataset=private.config["dataset"], model=private.config["model"],
                         batch_size=int(private.config["batch_size"]), private=True)
    assert len(costs) == 1 and costs[0].ms_per_step > 0 and costs[0].fixed_s >= 0


# ---------------------------------------------------------------------- tradeoff data
def fake_runs() -> pd.DataFrame:
    """A list_runs-like frame: 2 epsilons x 2 clips x 2 seeds, 2 baselines, plus a failed run and an attack job."""
    rows = []
    accuracy = {(1.0, 0.5): (0.70, 0.74), (1.0, 2.0): (0.60, 0.62), (4.0, 0.5): (0.80, 0.82), (4.0, 2.0): (0.84, 0.90)}
    for (eps, clip), values in accuracy.items():
        for seed, acc in enumerate(values):
            rows.append(dict(id=f"r-{eps:g}-{clip:g}-{seed}", name=f"eps {eps} C {clip} s {seed}", kind="train",
                             status="done", private=True, target_epsilon=eps, max_grad_norm=clip, seed=seed,
                             final_epsilon=eps * 0.99, test_accuracy=acc, mia_auc=0.5 + eps / 100,
                             mia_tpr_at_1pct_fpr=0.01 * eps, final_clip_fraction=0.9 - clip / 10,
                             mia_epsilon_lower=0.1 * eps, empirical_epsilon_lower=0.3 if eps == 4.0 else None))
    for seed, acc in enumerate((0.95, 0.93)):
        rows.append(dict(id=f"base-{seed}", name="baseline", kind="train", status="done", private=False, seed=seed,
                         max_grad_norm=1.0, final_epsilon=None, test_accuracy=acc, mia_auc=0.7,
                         mia_tpr_at_1pct_fpr=0.1))
    rows.append(dict(id="failed", name="x", kind="train", status="failed", private=True, target_epsilon=1.0,
                     max_grad_norm=0.5, seed=3, test_accuracy=None))
    rows.append(dict(id="attack-job", name="attack", kind="attack", status="done", private=True, target_epsilon=1.0,
                     max_grad_norm=0.5, seed=0, test_accuracy=0.1))
    return pd.DataFrame(rows)


def test_run_points_give_one_point_per_finished_training_run():
    points = frontiers.run_points(fake_runs())
    assert len(points) == 10 and set(points["run_id"]) == set(fake_runs()["id"]) - {"failed", "attack-job"}
    assert points["is_baseline"].sum() == 2
    assert points.loc[points["is_baseline"], "epsilon"].map(math.isinf).all()
    assert list(points.columns) == list(frontiers.POINT_COLUMNS)
    assert frontiers.run_points(pd.DataFrame()).empty


def test_frontier_picks_the_best_clip_per_epsilon_and_aggregates_seeds():
    front = frontiers.frontier(frontiers.run_points(fake_runs()))
    assert list(front["label"]) == ["ε 1", "ε 4", "non-private baseline"]
    eps1, eps4, base = (front.iloc[i] for i in range(3))
    assert eps1["max_grad_norm"] == 0.5 and eps1["test_accuracy"] == pytest.approx(0.72)
    assert eps1["test_accuracy_std"] == pytest.approx(pd.Series([0.70, 0.74]).std())
    assert eps4["max_grad_norm"] == 2.0 and eps4["test_accuracy"] == pytest.approx(0.87) and eps4["n_runs"] == 2
    assert bool(base["is_baseline"]) and math.isinf(base["epsilon"]) and base["test_accuracy"] == pytest.approx(0.94)
    assert sorted(base["run_ids"]) == ["base-0", "base-1"]
    fixed = frontiers.frontier(frontiers.run_points(fake_runs()), max_grad_norm=0.5)
    assert list(fixed["max_grad_norm"].iloc[:2]) == [0.5, 0.5]
    one_seed = frontiers.frontier(frontiers.run_points(fake_runs()[fake_runs()["seed"] == 0]))
    assert one_seed["test_accuracy_std"].isna().all()  # one seed: no error bar


def test_heatmap_has_one_cell_per_pair_and_one_best_per_epsilon():
    cells = frontiers.heatmap_data(frontiers.run_points(fake_runs()))
    assert len(cells) == 4
    best = cells[cells["is_best"]]
    assert sorted(zip(best["target_epsilon"], best["max_grad_norm"], strict=True)) == [(1.0, 0.5), (4.0, 2.0)]
    clip = frontiers.heatmap_data(frontiers.run_points(fake_runs()), value="final_clip_fraction")
    assert clip.set_index(["target_epsilon", "max_grad_norm"]).loc[(1.0, 2.0), "value"] == pytest.approx(0.7)


def test_bounds_prefer_the_attack_lab_bound():
    bounds = frontiers.bounds_data(frontiers.run_points(fake_runs())).set_index("run_id")
    assert len(bounds) == 8
    assert bounds.loc["r-4-0.5-0", "empirical_lower_bound"] == 0.3 and bounds.loc["r-4-0.5-0", "source"] == "attack lab"
    assert bounds.loc["r-1-0.5-0", "empirical_lower_bound"] == pytest.approx(0.1)


def test_charts_carry_the_baseline_error_bars_and_run_ids_for_clicks():
    points = frontiers.run_points(fake_runs())
    front = frontiers.frontier(points)
    utility = plots.add_run_points(plots.privacy_utility_chart(front), points, x="epsilon", y="test_accuracy")
    names = [trace.name for trace in utility.data]
    assert any(name.startswith("non-private baseline (94.0%)") for name in names)
    dp = next(trace for trace in utility.data if trace.name == "DP-SGD runs")
    assert list(dp.error_y.array) == pytest.approx(list(front["test_accuracy_std"].iloc[:2]))
    clicks = next(trace for trace in utility.data if trace.name.startswith("single runs"))
    assert set(clicks.customdata) == set(points.loc[~points["is_baseline"], "run_id"])  # baselines: ε = ∞

    auc = plots.attack_vs_epsilon_chart(front, metric="mia_auc")
    assert any(shape.name == "chance" and shape.y0 == 0.5 for shape in auc.layout.shapes)
    assert any(trace.name.startswith("non-private baseline") for trace in auc.data)
    with pytest.raises(ConfigError):
        plots.attack_vs_epsilon_chart(front, metric="accuracy")
    tpr = plots.attack_vs_epsilon_chart(front, metric="mia_tpr_at_1pct_fpr")
    assert tpr.layout.yaxis.tickformat == "~%"  # 0.5 %, 1 %, 1.5 %: small rates keep their decimals

    heat = plots.sweep_heatmap(frontiers.heatmap_data(points))
    cells = next(trace for trace in heat.data if trace.name == "cells")
    assert len(cells.customdata) == 4 and set(cells.customdata) <= set(points["run_id"])
    assert any(trace.name == "best C for this ε" and len(trace.x) == 2 for trace in heat.data)
    assert plots.sweep_heatmap(None).layout.annotations[0].text == plots.NO_DATA_TEXT


def test_fraction_axis_fits_a_lone_point_inside_0_and_1():
    points = frontiers.run_points(fake_runs()[fake_runs()["target_epsilon"] == 1.0].head(1))
    fig = plots.fit_fraction_axis(plots.privacy_utility_chart(frontiers.frontier(points)))
    low, high = fig.layout.yaxis.range
    assert 0.0 <= low < 0.70 < high <= 1.0 and high - low < 0.2
    auc = plots.fit_fraction_axis(plots.attack_vs_epsilon_chart(frontiers.frontier(points)), include=(0.5,))
    assert auc.layout.yaxis.range[0] < 0.5 < auc.layout.yaxis.range[1]


# ---------------------------------------------------------------------- command line
def test_cli_sweep_runs_the_grid_and_resume_runs_nothing_twice(tmp_path, capsys):
    runs_dir = str(tmp_path / "cli-runs")
    argv = ["sweep", "--dataset", "synthetic", "--epochs", "1", "--epsilons", "2", "--no-baseline",
            "--runs-dir", runs_dir]
    assert main([*argv, "--dry-run"]) == 0
    assert "eps=2|C=0.3|seed=0" in capsys.readouterr().out  # the synthetic recipe's C
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/1] eps=2|C=0.3|seed=0: done" in out and "1/1 runs done" in out
    sweep_id = sweeps.list_sweeps(RunStore(runs_dir))[0].id
    assert main(["sweep", "--resume", sweep_id, "--runs-dir", runs_dir]) == 0
    assert "1 run(s) already done, 0 queued again" in capsys.readouterr().out
    assert len(RunStore(runs_dir).records(group=sweep_id)) == 1


@pytest.mark.parametrize("argv", [
    ["sweep", "--epsilons", "1,x"],
    ["sweep", "--noise-multiplier", "1.0"],
    ["sweep", "--no-dp"],
    ["sweep", "--resume", "sw-20000101-000000-000000"],
    ["sweep", "--epsilons", "-1", "--dry-run"],
])
def test_cli_sweep_bad_input_exits_2(argv, tmp_path, capsys):
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
