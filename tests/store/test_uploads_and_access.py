"""Uploads kept only while useful, capped; a read-only runs folder named as a permission problem (issue 13)."""

from __future__ import annotations

import os
import time

import pytest

from dpcore.store import artifacts
from dpcore.store import runs as runs_mod
from dpcore.store.runs import RunStore, StoreUnavailable


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_prune_keeps_used_and_current_uploads_and_drops_old_unused_ones(tmp_path):
    used = artifacts.save_upload(tmp_path, b"a,b\n1,2\n", "used.csv")
    old = artifacts.save_upload(tmp_path, b"a,b\n3,4\n", "old.csv")
    fresh = artifacts.save_upload(tmp_path, b"a,b\n5,6\n", "fresh.csv")
    current = artifacts.save_upload(tmp_path, b"a,b\n7,8\n", "current.csv")
    for path in (used, old, current):
        _age(path, 2 * artifacts.UNUSED_UPLOAD_AGE_S)
    removed = artifacts.prune_uploads(tmp_path, used=[str(used)], keep=[current])
    assert removed == [artifacts.upload_id(tmp_path, old)]
    assert used.is_file() and fresh.is_file() and current.is_file() and not old.exists()
    assert not old.parent.exists()  # its empty folder goes too


def test_prune_caps_count_and_bytes_oldest_unused_first(tmp_path):
    paths = []
    for i in range(6):
        path = artifacts.save_upload(tmp_path, f"a,b\n{i},{i}\n".encode() * 100, f"f{i}.csv")
        _age(path, 600 - i * 60)  # f0 oldest
        paths.append(path)
    removed = artifacts.prune_uploads(tmp_path, used=[paths[0]], max_files=4)
    assert removed == [artifacts.upload_id(tmp_path, paths[1]), artifacts.upload_id(tmp_path, paths[2])]
    size = paths[5].stat().st_size
    removed = artifacts.prune_uploads(tmp_path, used=[paths[0]], keep=[paths[5]], max_bytes=3 * size)
    assert removed == [artifacts.upload_id(tmp_path, paths[3])]  # oldest unused first; used and kept stay
    assert [p.exists() for p in paths] == [True, False, False, False, True, True]


def test_a_rejected_upload_is_discarded_unless_a_run_uses_it(tmp_path):
    reject = artifacts.save_upload(tmp_path, b"x" * 1000, "big.csv")
    assert artifacts.discard_upload(tmp_path, reject, used=[]) is True and not reject.exists()
    kept = artifacts.save_upload(tmp_path, b"y" * 10, "same.csv")
    assert artifacts.discard_upload(tmp_path, kept, used=[str(kept)]) is False and kept.exists()
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n")
    assert artifacts.discard_upload(tmp_path, outside) is False and outside.exists()  # never outside uploads/


def test_saving_the_same_upload_again_marks_it_recent(tmp_path):
    path = artifacts.save_upload(tmp_path, b"a,b\n1,2\n", "d.csv")
    _age(path, 2 * artifacts.UNUSED_UPLOAD_AGE_S)
    assert artifacts.save_upload(tmp_path, b"a,b\n1,2\n", "d.csv") == path
    assert artifacts.prune_uploads(tmp_path) == []


def _read_only(monkeypatch, *read_only) -> None:
    """Pretend ``read_only`` paths deny writing (the tests run as root, who may write anywhere)."""
    real = os.access
    denied = {str(path) for path in read_only}
    monkeypatch.setattr(artifacts.os, "access",
                        lambda path, mode: False if str(path) in denied and mode & os.W_OK else real(path, mode))


def test_a_read_only_runs_folder_is_named_as_a_permission_problem(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    RunStore(root).close()
    _read_only(monkeypatch, root)
    with pytest.raises(StoreUnavailable) as err:
        RunStore(root)
    message = str(err.value)
    assert f"no permission to write to {root}" in message
    assert "database" not in message and "cannot be read" not in message


def test_a_read_only_database_file_is_named_too(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    RunStore(root).close()
    _read_only(monkeypatch, root / runs_mod.DB_NAME)
    with pytest.raises(StoreUnavailable) as err:
        RunStore(root)
    assert f"no permission to write to {root / runs_mod.DB_NAME}" in str(err.value)


def test_saving_a_result_into_a_read_only_folder_says_so(tmp_path, monkeypatch):
    class Result:
        def save(self, folder):
            raise RuntimeError("File model.pt cannot be opened.")  # what torch would say

    (tmp_path / artifacts.ARTIFACTS_DIR).mkdir()
    _read_only(monkeypatch, tmp_path / artifacts.ARTIFACTS_DIR)
    with pytest.raises(artifacts.StorageNotWritable) as err:
        artifacts.save_result(tmp_path, "run-1", Result())
    assert "no permission to write to the folder" in str(err.value) and "Errno" not in str(err.value)
    assert runs_mod.format_error(err.value) == str(err.value)  # stored as the message, no traceback
