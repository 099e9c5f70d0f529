"""ETAs shown while a job runs: corrected from the job's own progress (``dpcore.views.progress.corrected_eta``)."""

from __future__ import annotations

import pytest

from dpcore.config import TrainConfig
from dpcore.jobs import sweep as sweeps
from dpcore.store.runs import RunRecord
from dpcore.views import attack_lab as lab
from dpcore.views import tradeoffs
from dpcore.views.progress import corrected_eta, eta_text, parse_time

T0 = "2025-01-01T00:00:00+00:00"
NOW = parse_time("2025-01-01T00:01:40+00:00")  # 100 s after T0


def test_corrected_eta_uses_the_jobs_own_speed_once_some_work_is_done():
    # 2 of 8 models in 100 s: 6 more take 300 s, whatever the estimate said
    assert corrected_eta(estimate_s=50.0, elapsed_s=100.0, done=2, total=8) == pytest.approx(300.0)
    assert corrected_eta(estimate_s=None, elapsed_s=100.0, done=0.5, total=1) == pytest.approx(100.0)
    # nothing done yet: the estimate less the time elapsed, never negative
    assert corrected_eta(estimate_s=250.0, elapsed_s=100.0, done=0, total=8) == pytest.approx(150.0)
    assert corrected_eta(estimate_s=50.0, elapsed_s=100.0, done=0, total=8) == 0.0
    assert corrected_eta(estimate_s=None, elapsed_s=100.0, done=0, total=8) is None
    assert corrected_eta(estimate_s=None, elapsed_s=5.0, done=8, total=8) == 0.0


def test_eta_text():
    assert eta_text(None) == ""
    assert eta_text(0.2) == "less than a second left"
    assert eta_text(125) == "about 2 min 05 s left"


def _record(**values) -> RunRecord:
    base = {"id": "r", "name": "r", "kind": "attack", "group": "g", "status": "running", "config": {},
            "started": T0}
    return RunRecord(**{**base, **values})


def test_attack_job_eta_from_progress_and_from_the_stored_estimate():
    moving = _record(steps_done=4, total_steps=17, summary={"estimate_s": 10.0})
    assert lab.job_eta_suffix(moving, now=NOW) == " · about 5 min 25 s left"  # 100 / 4 x 13 = 325 s
    waiting = _record(steps_done=0, total_steps=17, summary={"estimate_s": 130.0})
    assert lab.job_eta_suffix(waiting, now=NOW) == " · about 30 s left"
    assert lab.job_eta_suffix(_record(steps_done=0, total_steps=17), now=NOW) == ""
    kind, text = lab.job_status(_record(steps_done=4, total_steps=17, summary={"phase": "training"}),
                                position=None, run_training=False)
    assert kind == "running" and text.startswith("Attack running: training (24%)") and "left" in text


def test_sweep_eta_counts_running_members_by_their_share_of_steps():
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 4.0),
                            max_grad_norms=(1.0,), seeds=(0,))
    members = sweeps.expand(spec)
    runs = [_record(id="a", kind="train", status="done", steps_done=13, total_steps=13, finished=T0),
            _record(id="b", kind="train", steps_done=13, total_steps=26)]  # half way
    states = [sweeps.MemberState(members[0].key, members[0].config, "done", runs[0], 1),
              sweeps.MemberState(members[1].key, members[1].config, "running", runs[1], 1),
              sweeps.MemberState(members[2].key, members[2].config, "queued", None, 1)]
    # 1.5 runs in 100 s: the 1.5 left take 100 s
    assert tradeoffs.sweep_eta(states, now=NOW) == pytest.approx(100.0)
    progress = sweeps.SweepProgress(total=3, counts={"done": 1, "running": 1, "queued": 1}, status="running")
    assert tradeoffs.progress_text(progress, eta_s=100.0) == (
        "1 of 3 runs done · 1 running · 1 queued · about 1 min 40 s left")
    # nothing started yet and no spec: no ETA rather than a made-up one
    queued = [sweeps.MemberState(m.key, m.config, "queued", None, 1) for m in members]
    assert tradeoffs.sweep_eta(queued, now=NOW) is None
