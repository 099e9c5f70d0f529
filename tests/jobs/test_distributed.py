"""One training across 2 processes (torchrun, gloo on the CPU, Opacus DPDDP): same epsilon as one process, rows
and result stored once by rank 0; the launcher's and the sampler's pieces."""

from __future__ import annotations

import math

import pytest
import torch

from dpcore.config import TrainConfig
from dpcore.engine import ddp
from dpcore.engine.training import train
from dpcore.errors import ConfigError
from dpcore.jobs import distributed
from dpcore.jobs.training import baseline_config, run_training
from dpcore.store.runs import DONE, RUNNING

CFG = TrainConfig(dataset="digits", target_epsilon=3.0, epochs=4, reproducible=True, nproc=2)


def test_two_processes_train_one_model_with_one_process_epsilon(store, one_thread_and_no_leftover_jobs):
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)  # as the queue does before it hands a job to a runner
    distributed.train_stored_run_distributed(store, run_id)
    single = train(CFG.replace(nproc=1))

    record = store.get(run_id)
    summary = record.summary
    assert record.status == DONE and summary["status"] == "finished"
    # the same accountant inputs (sigma, q = global batch / N, steps), hence the same epsilon
    assert summary["noise_multiplier"] == pytest.approx(single.noise_multiplier, abs=1e-9)
    assert summary["sample_rate"] == pytest.approx(single.sample_rate, abs=1e-12)
    assert summary["steps"] == single.steps
    assert summary["final_epsilon"] == pytest.approx(single.final_epsilon, abs=1e-9)
    assert abs(summary["test_accuracy"] - single.test_accuracy) <= 0.08
    # rank 0 stored every step once, with epsilon, clip fractions and the GLOBAL batch (both ranks' examples)
    steps = store.steps(run_id)
    assert list(steps["step"]) == list(range(1, single.steps + 1))
    assert steps["epsilon"].is_monotonic_increasing
    assert steps["epsilon"].iloc[-1] == pytest.approx(single.final_epsilon, abs=1e-9)
    assert steps["clip_fraction"].between(0, 1).all()
    expected_batch = CFG.resolve().batch_size
    assert 0.8 * expected_batch <= steps["batch_size"].mean() <= 1.2 * expected_batch
    assert len(store.epochs(run_id)) == CFG.epochs
    assert len(store.records(kind="train")) == 1
    assert summary["mia_status"] == "done" and 0.0 <= summary["mia_auc"] <= 1.0
    assert record.train_config().nproc == 2


def test_nproc_is_validated_with_reasons():
    assert TrainConfig(target_epsilon=3.0).validate().nproc == 1
    for bad, reason in [(dict(nproc=0), "between 1"), (dict(nproc=2, private=False), "baseline"),
                        (dict(nproc=2, poisson_sampling=False), "poisson_sampling"),
                        (dict(nproc=65, batch_size=64), "batch_size")]:
        with pytest.raises(ConfigError, match=reason):
            TrainConfig(target_epsilon=3.0, **bad).validate()
    assert baseline_config(CFG).validate().nproc == 1  # the baseline trains in one process


def test_more_processes_than_this_machine_offers_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 2)
    distributed.check_nproc(CFG)
    with pytest.raises(ConfigError, match="2 core"):
        distributed.check_nproc(CFG.replace(nproc=4))
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        distributed.check_nproc(CFG.replace(device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="1 CUDA GPU"):
        distributed.check_nproc(CFG)


def test_torchrun_command_keeps_our_flags_away_from_torchrun():
    one_node = distributed.torchrun_command(nproc=2, module_args=["dpcore", "train", "--nproc", "2"])
    assert one_node[one_node.index("--nproc-per-node") + 1] == "2" and "--standalone" in one_node
    assert one_node[one_node.index("--") + 1:] == ["dpcore", "train", "--nproc", "2"]
    nodes = distributed.torchrun_command(nproc=4, module_args=["dpcore"], rendezvous=distributed.Rendezvous(
        nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500))
    flags = nodes[:nodes.index("--")]
    assert "--standalone" not in flags
    for flag, value in [("--nnodes", "2"), ("--node-rank", "1"), ("--master-addr", "10.0.0.1"),
                        ("--master-port", "29500")]:
        assert flags[flags.index(flag) + 1] == value


def test_a_failed_launch_is_one_line_naming_the_cause():
    stderr = ("Traceback (most recent call last):\n  File x\nValueError: boom\n"
              "error: nproc 2 needs poisson_sampling\n")
    assert distributed.failure_line(stderr, 1) == "nproc 2 needs poisson_sampling"
    assert distributed.failure_line("Traceback\nRuntimeError: NCCL failed\n", 1) == "RuntimeError: NCCL failed"
    assert distributed.failure_line("", 3) == "torchrun exited with status 3"
    torchrun = ("[rank0]: RuntimeError: [pair.cc:537] Read error: Connection reset by peer.\n"
                "[rank1]: Traceback (most recent call last):\n[rank1]: AttributeError: 'NoneType' has no 'x'\n"
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
                "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n")
    assert distributed.failure_line(torchrun, 1) == "rank 1: AttributeError: 'NoneType' has no 'x'"
    with pytest.raises(distributed.DistributedError, match=r"^distributed training failed: no such thing$"):
        distributed.launch([distributed.sys.executable, "-c", "import sys; sys.exit('error: no such thing')"])


def test_every_rank_takes_every_step_even_with_an_empty_batch(monkeypatch):
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    sampler = ddp.EveryStepSampler(total_size=20, sample_rate=0.05, steps=200,
                                   generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == 200  # Opacus' own sampler would skip the empty ones and desynchronise the ranks
    assert any(len(batch) == 0 for batch in batches)
    seen = set().union(*(set(batch.tolist()) for batch in batches))
    assert len(seen) <= 10  # only this rank's half of the data
    assert math.isclose(sum(map(len, batches)) / 200, 0.5, abs_tol=0.25)  # rate 0.05 on a shard of 10


def test_the_cli_refuses_what_cannot_run_in_one_line(capsys, monkeypatch):
    from dpcore import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 2)
    for flags, reason in [(["--nproc", "64"], "error: nproc 64 processes on the CPU, but this machine has 2"),
                          (["--nproc", "2", "--no-dp"], "error: nproc 2 trains with Opacus' DPDDP")]:
        assert cli.main(["train", "--dataset", "digits", "--target-epsilon", "3", *flags]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith(reason) and captured.err.count("\n") == 1, captured.err
        assert captured.out == ""  # nothing was launched


def test_one_process_never_trains_a_multi_process_config_by_mistake():
    with pytest.raises(ConfigError, match="torchrun"):
        run_training(CFG)


def test_the_queue_runs_a_multi_process_config_through_torchrun(store, monkeypatch):
    from dpcore.jobs import queue

    calls = []
    monkeypatch.setattr(queue, "train_stored_run_distributed", lambda *args, **kwargs: calls.append((args, kwargs)))
    run_id = store.create_run(CFG)
    assert queue.train_runner(run_id, store, lambda: False) is None
    assert calls and calls[0][0] == (store, run_id)


def test_a_continuation_reaches_the_ranks_unchanged(tmp_path):
    from dpcore.engine.checkpoint import ResumeState

    resume = ResumeState(model_state={"w": torch.arange(3.0)}, optimizer_state={"state": {}},
                         accountant_history=[(1.2, 0.18, 30)], noise_multiplier=1.2, epochs_done=5, steps_done=30,
                         sample_rate=0.18)
    distributed.save_resume(resume, tmp_path)
    loaded = ResumeState.load(tmp_path)
    assert torch.equal(loaded.model_state["w"], resume.model_state["w"])
    assert (loaded.accountant_history, loaded.noise_multiplier, loaded.epochs_done, loaded.steps_done,
            loaded.sample_rate) == ([(1.2, 0.18, 30)], 1.2, 5, 30, 0.18)
