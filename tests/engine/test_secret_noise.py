"""Issue 8.1: the DP noise and the batch sampling are secret unless a run is explicitly reproducible.

The seed fixes the initial weights only; by default noise and Poisson batches come from OS entropy
that is never stored, so retraining from a stored config does not reproduce the released model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dpcore import TrainConfig, train
from dpcore.cli import build_parser, config_from_args
from dpcore.engine import training as training_mod
from dpcore.engine.checkpoint import ResumeState
from dpcore.engine.training import _random_streams
from dpcore.query import from_query, to_query

CFG = TrainConfig(dataset="synthetic", noise_multiplier=1.0, max_grad_norm=1.0, epochs=1, batch_size=64,
                  lr=0.05, seed=7, device="cpu")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def weights(result) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in result.model.state_dict().items()}


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[key] - b[key]).abs().max()) for key in a)


def first_noise(cfg: TrainConfig, resume: ResumeState | None = None, n: int = 64) -> torch.Tensor:
    _, noise = _random_streams(cfg, resume=resume, device=CPU)
    return torch.normal(0.0, 1.0, size=(n,), generator=noise)


def first_batch_draw(cfg: TrainConfig, resume: ResumeState | None = None, n: int = 64) -> torch.Tensor:
    loader, _ = _random_streams(cfg, resume=resume, device=CPU)
    return torch.rand(n, generator=loader)


def resume_state(steps_done: int) -> ResumeState:
    return ResumeState(model_state={}, optimizer_state={}, accountant_history=[], noise_multiplier=1.0,
                       epochs_done=1, steps_done=steps_done)


# ---------------------------------------------------------------------- whole runs
def test_two_default_runs_of_one_config_differ_in_weights_and_batches():
    first, second = train(CFG), train(CFG)
    assert max_abs_difference(weights(first), weights(second)) > 1e-4
    assert first.history["batch_size"].tolist() != second.history["batch_size"].tolist()  # sampling is secret


def test_retraining_from_a_default_runs_stored_config_does_not_reproduce_it():
    released = train(CFG)
    stored = json.loads(json.dumps(released.config.to_dict()))  # what summary.json keeps
    again = train(TrainConfig.from_dict(stored))
    assert again.config == released.config and not again.config.reproducible
    assert max_abs_difference(weights(released), weights(again)) > 1e-4


def test_a_reproducible_run_is_reproduced_bit_for_bit_from_its_stored_config():
    released = train(CFG.replace(reproducible=True))
    again = train(TrainConfig.from_dict(json.loads(json.dumps(released.config.to_dict()))))
    assert again.config.reproducible
    assert max_abs_difference(weights(released), weights(again)) == 0.0
    assert released.history["batch_size"].tolist() == again.history["batch_size"].tolist()
    assert released.summary()["reproducible"] is True


def test_the_seed_still_fixes_the_initial_weights():
    """Cancelled before the first step, a run returns its initial model: fixed by the seed alone."""
    def initial(cfg: TrainConfig) -> dict[str, torch.Tensor]:
        result = train(cfg, should_stop=lambda: True)
        assert result.status == "cancelled" and result.steps == 0
        return weights(result)

    assert max_abs_difference(initial(CFG), initial(CFG)) == 0.0
    assert max_abs_difference(initial(CFG), initial(CFG.replace(reproducible=True))) == 0.0
    assert max_abs_difference(initial(CFG), initial(CFG.replace(seed=8))) > 0.0


def test_the_os_entropy_is_the_only_randomness_of_a_default_run(monkeypatch):
    """Pin ``secrets.randbits``: two default runs then agree bit for bit, so nothing else random enters."""
    monkeypatch.setattr(training_mod.secrets, "randbits", lambda bits: 0x5EC2E7 % 2**bits)
    first, second = train(CFG), train(CFG)
    assert max_abs_difference(weights(first), weights(second)) == 0.0


def test_the_global_rngs_do_not_follow_the_seed_after_a_default_run():
    train(CFG)
    torch_after, numpy_after = torch.rand(4), np.random.random_sample(4)
    train(CFG)
    assert not torch.equal(torch_after, torch.rand(4))
    assert not np.array_equal(numpy_after, np.random.random_sample(4))


def test_the_secret_seed_appears_in_nothing_stored(monkeypatch, tmp_path):
    secret = 0x9E3779B97F4A7C15  # a recognisable 64-bit value standing in for the OS entropy
    monkeypatch.setattr(training_mod.secrets, "randbits", lambda bits: secret % 2**bits)
    result = train(CFG)
    result.save(tmp_path / "run")
    needles = {str(secret), hex(secret)[2:], str(secret & 0xFFFFFFFF), str(secret >> 32)}
    summary = json.dumps({"config": result.config.to_dict(), "summary": result.summary()})
    for name in ("summary.json", "history.csv", "epochs.csv"):
        text = (tmp_path / "run" / name).read_text()
        assert not any(needle in text for needle in needles), name
    assert not any(needle in summary for needle in needles)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert not {key for key in checkpoint if "seed" in key or "generator" in key or "rng" in key}
    plain = json.dumps({key: value for key, value in checkpoint.items() if key not in ("model_state",
                                                                                      "optimizer_state")})
    assert not any(needle in plain for needle in needles)
    assert not any(isinstance(value, torch.Generator) for value in vars(result).values())


# ---------------------------------------------------------------------- the streams helper
def test_default_streams_are_fresh_every_time():
    assert not torch.equal(first_noise(CFG), first_noise(CFG))
    assert not torch.equal(first_batch_draw(CFG), first_batch_draw(CFG))


def test_reproducible_streams_follow_the_config():
    cfg = CFG.replace(reproducible=True)
    assert torch.equal(first_noise(cfg), first_noise(cfg))
    assert torch.equal(first_batch_draw(cfg), first_batch_draw(cfg))
    assert not torch.equal(first_noise(cfg), first_batch_draw(cfg))  # noise and batches are separate streams
    assert not torch.equal(first_noise(cfg), first_noise(cfg.replace(seed=8)))


@pytest.mark.parametrize("reproducible", [True, False])
def test_sweep_members_with_one_seed_never_share_a_stream(reproducible):
    from dpcore.jobs.sweep import SweepSpec, expand

    spec = SweepSpec(base=CFG.replace(noise_multiplier=None, reproducible=reproducible), epsilons=(1.0, 4.0),
                     max_grad_norms=(0.5, 1.0), seeds=(0,), include_baseline=False)
    members = [member.config for member in expand(spec)]
    assert len(members) == 4 and {cfg.seed for cfg in members} == {0}
    assert all(cfg.reproducible is reproducible for cfg in members)
    noises = [first_noise(cfg) for cfg in members]
    batches = [first_batch_draw(cfg) for cfg in members]
    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            assert not torch.equal(noises[i], noises[j])
            assert not torch.equal(batches[i], batches[j])


def test_a_reproducible_continuation_never_replays_its_parents_streams():
    cfg = CFG.replace(reproducible=True)
    parent_noise = first_noise(cfg, n=4096)  # the parent's first steps' noise, as one long draw
    parent_batches = first_batch_draw(cfg, n=4096)
    for steps_done in (1, 13, 26):
        noise = first_noise(cfg, resume_state(steps_done), n=64)
        batches = first_batch_draw(cfg, resume_state(steps_done), n=64)
        assert torch.equal(noise, first_noise(cfg, resume_state(steps_done), n=64))  # still reproducible
        windows = parent_noise.unfold(0, 64, 1)
        assert not bool((windows == noise).all(dim=1).any())  # not a shifted copy of the parent's noise
        assert not bool((parent_batches.unfold(0, 64, 1) == batches).all(dim=1).any())
    assert not torch.equal(first_noise(cfg, resume_state(13)), first_noise(cfg, resume_state(26)))


def test_a_reproducible_continuation_trains_on_other_batches_than_its_parent(tmp_path):
    cfg = CFG.replace(reproducible=True)
    parent = train(cfg)
    parent.save(tmp_path / "run")
    more = train(cfg, resume=ResumeState.load(tmp_path / "run"))
    assert more.history["batch_size"].tolist() != parent.history["batch_size"].tolist()


# ---------------------------------------------------------------------- where the switch is set
@pytest.mark.parametrize("command", ["train", "check", "sweep"])
def test_the_cli_has_a_reproducible_flag(command):
    parser = build_parser()
    args = parser.parse_args([command, "--dataset", "synthetic", "--reproducible"])
    assert config_from_args(args).reproducible is True
    args = parser.parse_args([command, "--dataset", "synthetic"])
    assert config_from_args(args).reproducible is False


def test_the_switch_survives_the_url_round_trip():
    cfg = CFG.replace(reproducible=True)
    assert to_query(cfg)["reproducible"] in ("true", "True", "1")
    assert from_query(to_query(cfg)) == cfg
    assert "reproducible" not in to_query(CFG)
