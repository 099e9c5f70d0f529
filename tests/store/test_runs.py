"""Tests for dpcore.store.runs: the SQLite run store (records, metrics, restart recovery, concurrency, files)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.store.runs import (
    CANCELLED,
    DB_NAME,
    DONE,
    EPOCH_COLUMNS,
    FAILED,
    INTERRUPTED,
    LIST_COLUMNS,
    QUEUED,
    RUNNING,
    RunActive,
    RunNotFound,
    RunStore,
    StoreUnavailable,
    default_root,
    own_token,
    process_token,
)

REPO = Path(__file__).resolve().parents[2]


def _steps(first: int, count: int, *, epoch: int = 1) -> list[dict]:
    return [dict(step=s, epoch=epoch, epsilon=0.01 * s, clip_fraction=0.5, loss=1.0 / s, batch_size=64)
            for s in range(first, first + count)]


class FakeResult:
    """Just enough of training.RunResult for RunStore.finish."""

    def __init__(self, *, status: str = "finished", steps: int = 3, fail_save: bool = False) -> None:
        self.config = TrainConfig(dataset="synthetic", target_epsilon=3.0).resolve()
        self.status = status
        self.stop_reason = f"stopped: {status}"
        self.steps = steps
        self.device = "cpu"
        self.history = pd.DataFrame(_steps(1, steps))
        self.epochs = pd.DataFrame([dict(epoch=1, epsilon=2.9, train_loss=0.4, train_accuracy=0.8,
                                         test_accuracy=0.75)])
        self.fail_save = fail_save

    def summary(self) -> dict:
        return {"final_epsilon": 2.9, "test_accuracy": 0.75, "train_accuracy": 0.8, "noise_multiplier": 1.1,
                "status": self.status, "fixes": ["a: b -> c"]}

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text(json.dumps(self.summary()))
        if self.fail_save:
            raise OSError("disk full")
        (directory / "history.csv").write_text(self.history.to_csv(index=False))


def _force_owner(store: RunStore, run_id: str, *, status: str, pid: int, token: str | None) -> None:
    """Pretend another process owns the run (what a crashed app leaves behind)."""
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE runs SET status = ?, pid = ?, owner_token = ? WHERE id = ?", (status, pid, token, run_id))


def test_create_get_and_list(store):
    cfg = TrainConfig(dataset="digits", target_epsilon=3.0)
    first = store.create_run(cfg)
    second = store.create_run(TrainConfig(dataset="synthetic", private=False), name="baseline", group="sweep-1")
    attack = store.create_run({"target": first, "attack": "loss"}, kind="attack")

    rec = store.get(first)
    assert rec.id == first and rec.status == QUEUED and rec.kind == "train"
    assert rec.config == cfg.to_dict() and rec.train_config() == cfg
    assert rec.name == cfg.label()
    assert rec.pid == os.getpid() and rec.created.endswith("+00:00")
    assert rec.steps_done == 0 and rec.progress is None and rec.active and not rec.cancel_requested
    assert store.get(second).group == "sweep-1" and store.get(attack).name == "attack"

    runs = store.list_runs()
    assert list(runs.columns[: len(LIST_COLUMNS)]) == list(LIST_COLUMNS)
    assert list(runs["id"]) == [attack, second, first]  # newest first
    assert list(store.list_runs(kind="train")["id"]) == [second, first]
    assert list(store.list_runs(group="sweep-1")["id"]) == [second]
    row = runs.set_index("id").loc[first]
    assert row["dataset"] == "digits" and row["mode"] == "epsilon" and row["target_epsilon"] == 3.0
    assert pd.isna(row["final_epsilon"]) and row["status"] == QUEUED
    assert runs.set_index("id").loc[second, "mode"] == "baseline"

    store.update_summary(first, final_epsilon=2.97, test_accuracy=0.9)
    assert store.update_summary(first, mia_auc=0.53) == {"final_epsilon": 2.97, "test_accuracy": 0.9, "mia_auc": 0.53}
    row = store.list_runs(kind="train").set_index("id").loc[first]
    assert (row["final_epsilon"], row["test_accuracy"], row["mia_auc"]) == (2.97, 0.9, 0.53)


def test_empty_list_has_columns(store):
    runs = store.list_runs()
    assert runs.empty and list(runs.columns) == list(LIST_COLUMNS)


def test_ids_are_unique_and_sortable(store):
    ids = [store.create_run({"n": i}, kind="x") for i in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) == len(ids[0]) for i in ids)
    assert [i[:15] for i in ids] == sorted(i[:15] for i in ids)  # creation second sorts first


def test_status_transitions_and_progress(store):
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    assert store.set_status(run_id, RUNNING, only_from=(QUEUED,))
    assert not store.set_status(run_id, RUNNING, only_from=(QUEUED,))  # already claimed
    store.set_progress(run_id, 5, 20)
    store.set_progress(run_id, 10)
    rec = store.get(run_id)
    assert rec.started and rec.steps_done == 10 and rec.total_steps == 20 and rec.progress == 0.5
    assert store.request_cancel(run_id) == RUNNING and store.cancel_requested(run_id)
    store.set_status(run_id, CANCELLED, stop_status=CANCELLED, stop_reason="cancelled by request")
    rec = store.get(run_id)
    assert rec.status == CANCELLED and rec.finished and rec.stop_reason == "cancelled by request"
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_status(run_id, "exploded")


def test_cancel_queued_run_is_immediate(store):
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    assert store.request_cancel(run_id) == CANCELLED
    rec = store.get(run_id)
    assert rec.status == CANCELLED and rec.finished and rec.cancel_requested
    assert not store.set_status(run_id, RUNNING, only_from=(QUEUED,))  # a worker can no longer claim it


def test_metrics_round_trip(store):
    run_id = store.create_run(TrainConfig(private=False))
    assert store.append_steps(run_id, _steps(1, 3)) == 3
    assert store.append_steps(run_id, [dict(step=4, epoch=2, epsilon=math.inf, clip_fraction=math.nan,
                                            loss=0.2, batch_size=60)]) == 1
    assert store.append_steps(run_id, []) == 0
    store.append_steps(run_id, _steps(2, 1))  # a repeated step replaces, never duplicates
    steps = store.steps(run_id)
    assert list(steps.columns) == ["step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size"]
    assert list(steps["step"]) == [1, 2, 3, 4] and steps["step"].dtype == "int64"
    assert steps["epsilon"].iloc[3] == math.inf and math.isnan(steps["clip_fraction"].iloc[3])
    assert steps["loss"].tolist()[:3] == pytest.approx([1.0, 0.5, 1 / 3])

    store.append_epoch(run_id, dict(epoch=1, epsilon=1.5, train_loss=0.5, train_accuracy=0.7, test_accuracy=0.65))
    store.append_epoch(run_id, pd.DataFrame([dict(epoch=2, epsilon=2.5, train_loss=0.4, train_accuracy=0.8,
                                                  test_accuracy=None)]))
    epochs = store.epochs(run_id)
    assert list(epochs["epoch"]) == [1, 2] and epochs["test_accuracy"].isna().tolist() == [False, True]
    assert epochs["train_accuracy"].tolist() == [0.7, 0.8]

    other = store.create_run(TrainConfig(private=False))
    assert store.steps(other).empty and list(store.epochs(other).columns) == list(EPOCH_COLUMNS)


def test_bad_row_writes_nothing(store):
    run_id = store.create_run(TrainConfig(private=False))
    store.append_steps(run_id, _steps(1, 2))
    with pytest.raises(ValueError, match="'step'"):
        store.append_steps(run_id, [*_steps(3, 2), dict(epoch=1, loss=0.1)])
    assert list(store.steps(run_id)["step"]) == [1, 2]  # the failed batch was rolled back as a whole


def test_run_not_found(store):
    for call in (lambda: store.get("20990101-000000-abcdef"), lambda: store.steps("nope"),
                 lambda: store.append_steps("nope", _steps(1, 1)), lambda: store.set_progress("nope", 1),
                 lambda: store.request_cancel("nope"), lambda: store.update_summary("nope", a=1),
                 lambda: store.fail("nope", "x"), lambda: store.delete("nope"), lambda: store.artifacts_dir("nope"),
                 lambda: store.artifacts_dir("../etc"), lambda: store.set_status("nope", DONE)):
        with pytest.raises(RunNotFound) as info:
            call()
        assert isinstance(info.value, DPExplorerError)
    assert "no run with id '20990101-000000-abcdef'" in str(_raised(lambda: store.get("20990101-000000-abcdef")))


def _raised(call) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("no exception")


def test_finish_saves_artifacts_summary_and_metrics(store):
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0))
    store.set_status(run_id, RUNNING)
    store.append_steps(run_id, _steps(1, 2))  # what the live callbacks managed to write
    rec = store.finish(run_id, FakeResult(steps=3))
    assert rec.status == DONE and rec.stop_status == "finished" and rec.device == "cpu" and rec.steps_done == 3
    assert rec.summary["final_epsilon"] == 2.9 and rec.config["model"] == "mlp"  # the resolved config
    assert list(store.steps(run_id)["step"]) == [1, 2, 3] and len(store.epochs(run_id)) == 1
    folder = store.artifacts_dir(run_id)
    assert sorted(p.name for p in folder.iterdir()) == ["history.csv", "summary.json"]
    assert not [p for p in (store.root / "artifacts").iterdir() if p.name.startswith(".")]
    row = store.list_runs().set_index("id").loc[run_id]
    assert row["status"] == DONE and row["noise_multiplier"] == 1.1 and "fixes" not in row.index

    cancelled = store.create_run(TrainConfig(target_epsilon=3.0))
    assert store.finish(cancelled, FakeResult(status="cancelled")).status == CANCELLED
    assert store.finish(store.create_run(TrainConfig(target_epsilon=3.0)),
                        FakeResult(status="epsilon_limit")).stop_status == "epsilon_limit"


def test_failing_save_leaves_run_and_others_intact(store):
    good = store.create_run(TrainConfig(target_epsilon=3.0))
    store.finish(good, FakeResult())
    bad = store.create_run(TrainConfig(target_epsilon=3.0))
    store.set_status(bad, RUNNING)
    with pytest.raises(OSError, match="disk full"):
        store.finish(bad, FakeResult(fail_save=True))
    assert store.get(bad).status == RUNNING and not store.artifacts_path(bad).exists()
    assert store.get(good).status == DONE and len(list(store.artifacts_dir(good).iterdir())) == 2
    store.fail(bad, OSError("disk full"))
    rec = store.get(bad)
    assert rec.status == FAILED and rec.error_message == "OSError: disk full" and rec.stop_reason == rec.error_message


def test_fail_messages(store):
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    store.fail(run_id, DPExplorerError("dataset 'x' is unknown; pick one of a, b"))
    assert store.get(run_id).error == "dataset 'x' is unknown; pick one of a, b"
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        store.fail(run_id, exc)
    error = store.get(run_id).error
    assert error.startswith("RuntimeError: boom\n") and "Traceback" in error and "test_fail_messages" in error


def test_load_weights_uses_safe_loader(store):
    torch = pytest.importorskip("torch")
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    with pytest.raises(DPExplorerError, match=r"has no model\.pt"):
        store.load_weights(run_id)
    torch.save({"w": torch.arange(3.0)}, store.artifacts_dir(run_id, create=True) / "model.pt")
    assert torch.equal(store.load_weights(run_id)["w"], torch.arange(3.0))
    torch.save({"obj": FakeResult}, store.artifacts_dir(run_id) / "evil.pt")  # pickled class: refused
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        store.load_weights(run_id, "evil.pt")


def test_delete_removes_row_metrics_and_artifacts(store):
    keep = store.create_run(TrainConfig(target_epsilon=3.0))
    store.append_steps(keep, _steps(1, 2))
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    store.set_status(run_id, RUNNING)
    with pytest.raises(RunActive, match="cancel it"):
        store.delete(run_id)
    store.append_steps(run_id, _steps(1, 5))
    store.finish(run_id, FakeResult())
    folder = store.artifacts_dir(run_id)
    store.delete(run_id)
    assert not folder.exists() and not store.exists(run_id)
    with pytest.raises(RunNotFound):
        store.get(run_id)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM steps WHERE run_id = ?", (run_id,)).fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?", (run_id,)).fetchone() == (0,)
    assert len(store.steps(keep)) == 2  # the other run is untouched
    store.delete(keep, force=True)
    assert store.list_runs().empty


def test_delete_takes_the_runs_other_jobs_but_not_its_continuations(store):
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    store.finish(run_id, FakeResult())
    continuation = store.create_run(TrainConfig(target_epsilon=3.0), group=run_id)
    store.finish(continuation, FakeResult())
    attack = store.create_run({"what": "attack"}, kind="attack", group=run_id)
    store.set_status(attack, RUNNING)
    (store.artifacts_dir(attack, create=True) / "progress.txt").write_text("1 of 8")
    with pytest.raises(RunActive, match=f"attack job {attack} on run {run_id} is running"):
        store.delete(run_id)
    assert store.exists(run_id)  # refused: nothing deleted
    store.set_status(attack, DONE, only_from=(RUNNING,))
    assert store.delete(run_id) == [run_id, attack]
    assert not store.exists(attack) and not store.artifacts_path(attack).exists()
    assert store.exists(continuation) and store.get(continuation).group == run_id


def test_restart_keeps_runs_and_interrupts_orphans(store, tmp_path):
    done = store.create_run(TrainConfig(target_epsilon=3.0))
    store.append_steps(done, _steps(1, 2))
    store.finish(done, FakeResult(steps=3))
    mine = store.create_run(TrainConfig(target_epsilon=3.0))  # owned by this live process
    store.set_status(mine, RUNNING)
    dead = store.create_run(TrainConfig(target_epsilon=3.0))
    reused = store.create_run(TrainConfig(target_epsilon=3.0))
    queued_dead = store.create_run(TrainConfig(target_epsilon=3.0))
    alive = store.create_run(TrainConfig(target_epsilon=3.0))

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    _force_owner(store, dead, status=RUNNING, pid=dead_pid, token="boot:123")
    # Our own pid, but a token from an earlier process that had the same pid (pid reuse after restart).
    _force_owner(store, reused, status=RUNNING, pid=os.getpid(), token="boot:older-process")
    _force_owner(store, queued_dead, status=QUEUED, pid=dead_pid, token=None)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _force_owner(store, alive, status=RUNNING, pid=sleeper.pid, token=process_token(sleeper.pid))

        reopened = RunStore(store.root)
        assert sorted(reopened.recovered) == sorted([dead, reused, queued_dead])
        for run_id in (dead, reused, queued_dead):
            rec = reopened.get(run_id)
            assert rec.status == INTERRUPTED and rec.finished and "stopped while it was" in rec.stop_reason
        assert reopened.get(mine).status == RUNNING and reopened.get(alive).status == RUNNING
        assert reopened.get(done).status == DONE and len(reopened.steps(done)) == 3
        assert len(reopened.list_runs()) == 6
        assert RunStore(store.root).recovered == []  # idempotent
    finally:
        sleeper.kill()
        sleeper.wait()
    assert reopened.recover() == [alive]


def test_unusable_runs_directories_say_what_is_wrong_and_change_nothing(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(StoreUnavailable, match="a-file is a file, not a folder; point DPEXPLORER_RUNS_DIR"):
        RunStore(a_file)
    with pytest.raises(StoreUnavailable, match=r"a part of .*a-file/runs is a file, not a folder"):
        RunStore(a_file / "runs")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / DB_NAME).write_bytes(b"not sqlite " * 100)
    with pytest.raises(StoreUnavailable, match=rf"database {DB_NAME} cannot be read .* Move that file aside"):
        RunStore(damaged)
    assert (damaged / DB_NAME).read_bytes() == b"not sqlite " * 100  # the damaged store is left for recovery
    assert a_file.read_text() == "not a folder"


def test_own_token_is_stable_and_distinct():
    assert own_token() == own_token()
    if process_token(os.getpid()) is not None:
        assert process_token(os.getpid()) == own_token()
        assert process_token(1) != own_token()


def test_default_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DPEXPLORER_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
    assert RunStore().root == (tmp_path / "elsewhere").resolve() and (tmp_path / "elsewhere" / "runs.sqlite3").exists()
    monkeypatch.delenv("DPEXPLORER_RUNS_DIR")
    assert default_root() == Path("runs")


def test_concurrent_writers_lose_nothing(store):
    shared = store.create_run(TrainConfig(target_epsilon=3.0))
    own = [store.create_run(TrainConfig(target_epsilon=3.0)) for _ in range(4)]
    second_store = RunStore(store.root)  # a second handle, as another session or module would open
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(index: int) -> None:
        handle = store if index % 2 else second_store
        try:
            start.wait()
            for batch in range(20):
                first = index * 1000 + batch * 10 + 1
                handle.append_steps(shared, _steps(first, 10))
                handle.append_steps(own[index % 4], _steps(first, 10))
                handle.set_progress(own[index % 4], batch)
                handle.update_summary(shared, **{f"w{index}": batch})
                handle.list_runs() if batch % 10 == 0 else handle.get(shared)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(store.steps(shared)) == 8 * 20 * 10
    assert [len(store.steps(run_id)) for run_id in own] == [2 * 20 * 10] * 4
    assert store.get(shared).summary == {f"w{i}": 19 for i in range(8)}  # read-modify-write is atomic


def test_concurrent_processes(store):
    run_id = store.create_run(TrainConfig(target_epsilon=3.0))
    script = (
        "import sys\n"
        "from dpcore.store.runs import RunStore\n"
        "store = RunStore(sys.argv[1]); base = int(sys.argv[3])\n"
        "for b in range(20):\n"
        "    store.append_steps(sys.argv[2], [dict(step=base + b * 5 + i, loss=0.1) for i in range(5)])\n"
        "    store.update_summary(sys.argv[2], **{'p' + str(base): b})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store.root), run_id, str(base)], env=env)
             for base in (0, 1000, 2000)]
    store.append_steps(run_id, _steps(5000, 50))
    assert [proc.wait(30) for proc in procs] == [0, 0, 0]
    assert len(store.steps(run_id)) == 3 * 100 + 50
    assert store.get(run_id).summary == {"p0": 19, "p1000": 19, "p2000": 19}
    assert store.get(run_id).status == QUEUED  # subprocess opens did not mistake us for a dead owner


def test_save_upload_is_content_addressed(store):
    first = store.save_upload(b"a,b,label\n1,2,0\n", "my data.csv")
    again = store.save_upload(b"a,b,label\n1,2,0\n", "my data.csv")
    other = store.save_upload(b"a,b,label\n1,3,1\n", "my data.csv")
    assert first == again != other
    assert first.read_bytes() == b"a,b,label\n1,2,0\n" and first.name == "my_data.csv"
    assert first.parent.parent == store.root / "uploads" and first.parent.name != other.parent.name
    sneaky = store.save_upload(b"x", "../../../etc/passwd")
    assert sneaky.is_relative_to(store.root / "uploads") and sneaky.name == "passwd"
    assert store.save_upload(b"y", "").name == "upload.csv"
    assert not list((store.root / "uploads").rglob(".*partial"))
