"""A runs folder that turns read-only (or full) mid-run: the job ends 'failed' with one clear line, the queue
carries on, and runs saved before are untouched."""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
import worker_runners as runners

from dpcore.config import TrainConfig
from dpcore.jobs.queue import JobQueue
from dpcore.store.runs import DONE, FAILED, RunStore, format_error
from dpcore.store.write_errors import ADVICE, storage_problem

TIMEOUT = 180.0  # a fresh worker imports torch and Opacus: slow on a loaded 2-core machine
CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=2, device="cpu")


@pytest.fixture
def queue(store, one_thread_and_no_leftover_jobs):
    queue = JobQueue(store, cancel_grace_s=1.0)
    yield queue
    assert queue.shutdown(timeout=30)


def _saved_run(queue: JobQueue, store: RunStore) -> tuple[str, dict[str, bytes]]:
    """A finished training run and the bytes of its artifact files."""
    run_id = queue.submit(CFG)
    assert queue.wait(run_id, TIMEOUT).status == DONE
    folder = store.artifacts_dir(run_id)
    return run_id, {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def _assert_clear_failure(store: RunStore, run_id: str, *, reason: str) -> None:
    record = store.get(run_id)
    assert record.status == FAILED, (record.status, record.error)
    assert record.error.startswith(f"cannot write to the runs directory {store.root}: {reason}"), record.error
    assert "free space or fix permissions" in record.error
    assert "Traceback" not in record.error and "\n" not in record.error  # one line, no raw OSError traceback


def _assert_still_serving_and_nothing_lost(queue: JobQueue, store: RunStore, saved_id: str,
                                           saved_files: dict[str, bytes]) -> None:
    follow_up = queue.wait(queue.submit({"what": "pid"}, kind="test", runner=runners.record_pid), TIMEOUT)
    assert follow_up.status == DONE  # the queue (and its worker pool) carried on
    assert store.get(saved_id).status == DONE
    folder = store.artifacts_dir(saved_id)
    assert {name: (folder / name).read_bytes() for name in saved_files} == saved_files
    assert store.load_weights(saved_id)  # the saved model still loads


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC], ids=["read-only", "full"])
def test_a_refused_write_mid_training_fails_the_run_with_one_clear_line(queue, store, code):
    saved_id, saved_files = _saved_run(queue, store)
    run_id = queue.submit(CFG, runner=functools.partial(runners.train_with_refused_writes, code=code))
    record = queue.wait(run_id, TIMEOUT)
    assert record.steps_done > 0  # it failed mid-run, at the first epoch's checkpoint, not before training
    _assert_clear_failure(store, run_id, reason=os.strerror(code))
    _assert_still_serving_and_nothing_lost(queue, store, saved_id, saved_files)


def _chmod_protects(folder: Path) -> bool:
    """Whether a folder made read-only refuses this process's writes (root with CAP_DAC_OVERRIDE writes anyway)."""
    probe = folder / "chmod-probe"
    probe.mkdir()
    probe.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        (probe / "x").write_text("x")
        return False
    except PermissionError:
        return True
    finally:
        probe.chmod(stat.S_IRWXU)


def test_a_runs_folder_made_read_only_mid_run_fails_the_job_and_the_queue_carries_on(queue, store, tmp_path):
    if not _chmod_protects(tmp_path):
        pytest.skip("this user (root) writes through chmod; the simulated test above covers this case")
    saved_id, saved_files = _saved_run(queue, store)
    run_id = queue.submit({"what": "writes"}, kind="test", runner=runners.write_until_refused)
    deadline = time.monotonic() + TIMEOUT
    while store.get(run_id).steps_done < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get(run_id).status == "running"
    folders = [store.root / "artifacts", *(p for p in (store.root / "artifacts").iterdir() if p.is_dir())]
    modes = {folder: folder.stat().st_mode for folder in folders}
    try:
        for folder in folders:
            folder.chmod(stat.S_IRUSR | stat.S_IXUSR)  # read-only for everyone; the database stays writable
        record = queue.wait(run_id, TIMEOUT)
        assert record.error and record.steps_done >= 3
        _assert_clear_failure(store, run_id, reason=os.strerror(errno.EACCES))
    finally:
        for folder, mode in modes.items():
            folder.chmod(mode)
    _assert_still_serving_and_nothing_lost(queue, store, saved_id, saved_files)


def test_storage_problem_names_the_folder_and_what_to_do(tmp_path):
    root = tmp_path / "runs"
    inside = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root / "artifacts" / "r" / "model.pt"))
    text = storage_problem(inside, root=root)
    assert text.startswith(f"cannot write to the runs directory {root}: No space left on device (")
    assert text.endswith("then run it again") and "free space or fix permissions" in text
    outside = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/elsewhere/cache.npz")
    assert storage_problem(outside, root=root).startswith("cannot write to /elsewhere/cache.npz: Permission denied")
    scratch_file = root / "artifacts" / "r" / ".model.pt.0a1b2c3d.partial"  # dpcore.atomic's scratch file
    scratch = OSError(errno.EROFS, os.strerror(errno.EROFS), str(scratch_file))
    assert storage_problem(scratch, root=root).endswith(f"({root / 'artifacts' / 'r' / 'model.pt'}) — {ADVICE}")
    try:  # found through the chain too (torch and others re-raise with their own type)
        try:
            raise inside
        except OSError as err:
            raise RuntimeError("writer failed") from err
    except RuntimeError as wrapped:
        assert storage_problem(wrapped, root=root) == text
        assert format_error(wrapped, root=root) == text
    full_db = sqlite3.OperationalError("database or disk is full")
    assert "its run database refused the write" in storage_problem(full_db, root=root)
    assert storage_problem(ValueError("x"), root=root) is None
    assert storage_problem(FileNotFoundError(errno.ENOENT, "No such file", "x"), root=root) is None
    assert format_error(ValueError("x"), root=root).startswith("ValueError: x\n")  # others keep type and trace
