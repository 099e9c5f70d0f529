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
    # 2 of 8 models in 100 s (50 s each) against an estimate of 6.25 s each: the measured speed has the say
    eta = corrected_eta(estimate_s=50.0, elapsed_s=100.0, done=2, total=8)
    assert 250.0 < eta < 300.0  # 300 s at the measured speed alone
    assert corrected_eta(estimate_s=50.0, elapsed_s=100.0, done=2, total=8, prior_weight=0.0) == pytest.approx(300.0)
    assert corrected_eta(estimate_s=None, elapsed_s=100.0, done=0.5, total=1) == pytest.approx(100.0)
    # nothing done yet: the estimate less the time elapsed, never negative
    assert corrected_eta(estimate_s=250.0, elapsed_s=20.0, done=0, total=8) == pytest.approx(230.0)
    # ... but a first model that is overdue (100 s, estimated 6.25 s) means the 7 others take at least as long
    assert corrected_eta(estimate_s=50.0, elapsed_s=100.0, done=0, total=8) == pytest.approx(700.0)
    assert corrected_eta(estimate_s=50.0, elapsed_s=100.0, done=0, total=1) == 0.0
    assert corrected_eta(estimate_s=None, elapsed_s=100.0, done=0, total=8) is None
    assert corrected_eta(estimate_s=None, elapsed_s=5.0, done=8, total=8) == 0.0


def _job_length_predicted(*, slowdown: float, at: float, units: int = 16, per_unit_s: float = 3.0,
                          jitter: float = 0.0) -> tuple[float, float]:
    """(predicted total s = elapsed + ETA, real total s) of a synthetic job of ``units`` units estimated at
    ``per_unit_s`` each that really takes ``slowdown`` x that (unit k off by +-``jitter``), seen once ``at``
    of it is done."""
    real_units = [per_unit_s * slowdown * (1 + jitter * (-1) ** k) for k in range(units)]
    done = round(at * units)
    elapsed = sum(real_units[:done])
    eta = corrected_eta(estimate_s=units * per_unit_s, elapsed_s=elapsed, done=done, total=units)
    return elapsed + eta, sum(real_units)


@pytest.mark.parametrize("slowdown", [2.0, 0.5, 1.5, 3.0])
@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_a_slower_or_faster_machine_is_corrected_to_10_percent_after_the_first_quarter(slowdown, jitter):
    predicted, real = _job_length_predicted(slowdown=slowdown, at=0.25, jitter=jitter)
    assert abs(predicted - real) / real <= 0.10, (predicted, real)
    before, _ = _job_length_predicted(slowdown=slowdown, at=0.0)
    assert abs(before - real) / real > 0.3  # the estimate alone was far off: the correction did the work


def test_the_eta_converges_on_the_real_length_as_the_job_goes_on():
    errors = [abs(_job_length_predicted(slowdown=2.0, at=at)[0] / 96.0 - 1) for at in (0.0, 0.125, 0.25, 0.5, 0.75)]
    assert errors == sorted(errors, reverse=True) and errors[0] == pytest.approx(0.5) and errors[-1] < 0.02


def test_sweep_eta_is_corrected_by_the_sweeps_own_speed():
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 2.0, 4.0, 8.0),
                            max_grad_norms=(1.0,), seeds=(0,), include_baseline=False)
    members = sweeps.expand(spec)
    # estimated 25 s a run (100 s in all); the first run really took 50 s and finished at NOW
    done = _record(id="a", kind="train", status="done", steps_done=10, total_steps=10, finished="x")
    states = [sweeps.MemberState(members[0].key, members[0].config, "done", done, 1),
              *(sweeps.MemberState(m.key, m.config, "queued", None, 1) for m in members[1:])]
    at_50 = parse_time("2025-01-01T00:00:50+00:00")
    eta = tradeoffs.sweep_eta(states, now=at_50, estimate_s=100.0)
    assert abs((50.0 + eta) - 200.0) / 200.0 <= 0.10  # 4 x 50 s really
    # before anything ran, the stored estimate is what it shows (no calibration needed)
    queued = [sweeps.MemberState(m.key, m.config, "queued", None, 1) for m in members]
    assert tradeoffs.sweep_eta(queued, now=at_50, estimate_s=100.0) == pytest.approx(100.0)


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
    eta = corrected_eta(estimate_s=10.0, elapsed_s=100.0, done=4, total=17)
    assert 13 * 20 < eta < 13 * 25  # 25 s a model measured, 0.6 s estimated: near 325 s
    assert lab.job_eta(moving, now=NOW) == pytest.approx(eta)
    assert lab.job_eta_suffix(moving, now=NOW) == f" · {eta_text(eta)}"
    # the clock starts when the work starts (after any wait for the target's training), not when the job did
    waiting = _record(steps_done=0, total_steps=17, summary={"estimate_s": 130.0, "work_started": NOW - 5.0})
    assert lab.job_eta_suffix(waiting, now=NOW) == " · about 2 min 05 s left"
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


def _stamp(seconds: float) -> str:
    return f"2025-01-01T00:{int(seconds) // 60:02d}:{seconds % 60:06.3f}+00:00"


def test_sweep_eta_counts_a_running_member_by_its_time_not_its_steps():
    """Members take 40 s each: 10 s set-up, 20 s of steps, 10 s attack and writing. 1.25 runs' worth of steps done
    (the second member 25 % through its steps, 15 s in) counted by steps made the 4-run sweep 160 s long look
    176 s long (+10 %); counted by time against the first member's 40 s, exact."""
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 2.0, 4.0, 8.0),
                            max_grad_norms=(1.0,), seeds=(0,), include_baseline=False)
    members = sweeps.expand(spec)
    first = _record(id="a", kind="train", status="done", steps_done=20, total_steps=20, started=_stamp(0),
                    finished=_stamp(30), summary={"job_ended": _stamp(40)})
    second = _record(id="b", kind="train", steps_done=5, total_steps=20, started=_stamp(40))
    states = [sweeps.MemberState(members[0].key, members[0].config, "done", first, 1),
              sweeps.MemberState(members[1].key, members[1].config, "running", second, 1),
              *(sweeps.MemberState(m.key, m.config, "queued", None, 1) for m in members[2:])]
    now = parse_time(_stamp(55))
    assert tradeoffs.member_seconds_taken(first) == pytest.approx(40.0)
    assert 55.0 + tradeoffs.sweep_eta(states, now=now) == pytest.approx(160.0)
    by_steps = 55.0 + corrected_eta(estimate_s=None, elapsed_s=55.0, done=1.25, total=4)
    assert by_steps == pytest.approx(176.0)
    # before any member finished, the estimate's share (40 s a run) is the yardstick; past it, capped
    states[0] = sweeps.MemberState(members[0].key, members[0].config, "running", first.__class__(
        **{**first.__dict__, "status": "running", "finished": None, "summary": {}}), 1)
    assert tradeoffs.sweep_eta(states[:1], now=parse_time(_stamp(10)), estimate_s=40.0) == pytest.approx(30.0)
    late = tradeoffs.sweep_eta(states[:1], now=parse_time(_stamp(100)), estimate_s=40.0)
    assert late == pytest.approx(100.0 / tradeoffs.RUNNING_SHARE_CAP - 100.0, rel=0.05)
