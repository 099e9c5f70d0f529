"""The files of a stored run: its artifacts folder, the files in it, uploaded CSVs, and the ONE ROC loader.

A run's artifacts live in ``<runs root>/artifacts/<run_id>/``: ``model.pt`` (weights),
``checkpoint.pt`` (what continuing needs), ``history.csv``, ``epochs.csv``, ``summary.json``
(written by ``RunResult.save``) and ``roc.json`` (the loss-threshold attack's ROC). Uploaded CSVs
are kept content-addressed in ``<runs root>/uploads/<sha256[:16]>/<name>``. Every write goes
through ``dpcore.atomic``, so a crash never leaves a half-written file.

API (all paths are ``pathlib.Path``):

- ``artifacts_path(root, run_id)``: the run's folder (not created; ValueError for an unsafe id)
- ``save_result(root, run_id, result)``: ``result.save`` into a scratch folder, then moved in
- ``check_writable(*paths)``: StorageNotWritable naming a read-only folder or file (before torch or SQLite fail)
- ``remove_artifacts(root, run_id)``: delete the run's folder (missing is fine)
- ``load_weights(folder, filename)``: a saved state dict (``torch.load(weights_only=True)``)
- ``save_upload(root, data, filename)``: keep uploaded bytes; the same bytes give the same path
- ``upload_id(root, path)`` / ``upload_path(root, upload)``: the id a link carries for an upload, and back
  (``UploadNotFound`` for anything that is not a stored upload: a link never names a server path)
- ``discard_upload(root, path, used=...)`` / ``prune_uploads(root, used=..., keep=...)``: drop a rejected
  upload; cap the folder (unused uploads older than a day, then oldest unused first past the caps)
- ``write_roc(folder, payload)`` / ``load_roc(folder)``: ``roc.json`` as written / as stored (strict)
- ``roc_curve(folder)``: the ROC ready to plot (numpy ``fpr``/``tpr``, ``auc`` filled in), or None

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = write_roc(folder, {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0]})
>>> roc_curve(folder)["auc"]
0.75
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from dpcore.atomic import atomic_write_bytes, atomic_write_text
from dpcore.errors import DPExplorerError

ARTIFACTS_DIR = "artifacts"
UPLOADS_DIR = "uploads"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"
EPOCHS_FILE = "epochs.csv"
SUMMARY_FILE = "summary.json"
ROC_FILE = "roc.json"

_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")
_UPLOAD_ID = re.compile(r"[0-9a-f]{16}/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")  # '<sha256[:16]>/<safe name>'
MAX_UPLOADS = 200  # files kept in uploads/ beyond those runs use
MAX_UPLOAD_BYTES = 2 * 1024**3  # bytes kept in uploads/ beyond those runs use
UNUSED_UPLOAD_AGE_S = 24 * 3600.0  # an upload no run uses goes after a day


class StorageNotWritable(DPExplorerError, PermissionError):
    """A folder or file of the runs directory cannot be written (read-only mount, permissions).

    ``filename`` is the path; ``str(err)`` says what is wrong and what to do (no "[Errno 13]" prefix).
    """

    def __str__(self) -> str:
        return str(self.strerror)


def check_writable(*paths: str | os.PathLike[str]) -> None:
    """Raise StorageNotWritable naming the first existing path of ``paths`` this process may not write to.

    Paths that do not exist yet are skipped (their folder is checked by listing it too).
    """
    for path in map(Path, paths):
        if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
            what = "folder" if path.is_dir() else "file"
            raise StorageNotWritable(
                errno.EACCES, f"no permission to write to the {what} {path} (it is read-only for this user or on a "
                "read-only disk); make it writable (chmod/chown, or remount), or point DPEXPLORER_RUNS_DIR "
                "(or --runs-dir) at a folder you can write to", str(path))


def safe_filename(filename: str) -> str:
    """``filename``'s last part with anything but letters, digits, '.', '_' and '-' replaced (at most 100 chars)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(filename).replace("\\", "/")).name).strip("._")
    return name[:100] or "upload.csv"


def artifacts_path(root: str | os.PathLike[str], run_id: str) -> Path:
    """``root/artifacts/<run_id>`` (not created). ValueError for an id that could leave that folder."""
    if not _SAFE_ID.fullmatch(run_id or "") or run_id.startswith("."):
        raise ValueError(f"{run_id!r} is not a run id")
    return Path(root) / ARTIFACTS_DIR / run_id


def save_result(root: str | os.PathLike[str], run_id: str, result: Any) -> Path | None:
    """``result.save`` into a scratch folder, then move its files into the run's folder; return that folder.

    A save that fails leaves no half files behind. Returns None when ``result`` has no ``save``.
    """
    if not hasattr(result, "save"):
        return None
    target = artifacts_path(root, run_id)
    scratch = Path(root) / ARTIFACTS_DIR / f".partial-{run_id}-{secrets.token_hex(3)}"
    check_writable(root, Path(root) / ARTIFACTS_DIR, target)  # named here, not as torch's "cannot be opened"
    try:
        result.save(scratch)
        target.mkdir(parents=True, exist_ok=True)
        for path in scratch.iterdir():
            os.replace(path, target / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def remove_artifacts(root: str | os.PathLike[str], run_id: str) -> None:
    """Delete the run's artifacts folder and everything in it (nothing happens when it does not exist)."""
    shutil.rmtree(artifacts_path(root, run_id), ignore_errors=True)


def load_weights(folder: str | os.PathLike[str], filename: str = MODEL_FILE) -> dict[str, Any] | None:
    """The state dict in ``folder/filename`` (loaded on the CPU, ``weights_only=True``), or None when absent."""
    import torch  # deferred: torch is heavy and most store readers never load weights

    path = Path(folder) / safe_filename(filename)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_upload(root: str | os.PathLike[str], data: bytes, filename: str) -> Path:
    """Keep an uploaded file under ``root/uploads/<sha256[:16]>/<filename>``; return its path.

    The same bytes under the same name always map to the same path, so a run's
    ``data_path`` keeps pointing at exactly the data it was trained on.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(root) / UPLOADS_DIR / digest / safe_filename(filename)
    if path.is_file() and path.stat().st_size == len(data):
        os.utime(path)  # used again: the newest upload, the last one a cap removes
        return path
    return atomic_write_bytes(path, bytes(data))


class UploadNotFound(DPExplorerError, LookupError):
    """An upload id that names no upload this app stored in the runs folder."""


def upload_id(root: str | os.PathLike[str], path: str | os.PathLike[str] | None) -> str | None:
    """The id (``'<sha256[:16]>/<name>'``) of a stored upload at ``path``; None for any other path.

    Links carry this id instead of a server path; ``upload_path`` turns it back.
    """
    if not path:
        return None
    try:
        rel = Path(path).resolve().relative_to((Path(root) / UPLOADS_DIR).resolve()).as_posix()
    except (ValueError, OSError):
        return None
    return rel if _UPLOAD_ID.fullmatch(rel) else None


def upload_path(root: str | os.PathLike[str], upload: str) -> Path:
    """The stored file of upload id ``upload`` (see ``upload_id``).

    Raises UploadNotFound for an id of the wrong form (a path, ``..``) or one with no file in
    ``root/uploads`` (removed, or from another runs folder). Never returns a path outside that folder.
    """
    text = str(upload)
    if not _UPLOAD_ID.fullmatch(text):
        raise UploadNotFound("it is not an upload id (a link can only name a CSV uploaded to this app, never a file "
                             "on the server); upload the CSV on the Train page")
    folder = (Path(root) / UPLOADS_DIR).resolve()
    path = folder / text
    if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(folder):
        raise UploadNotFound("no such upload in this app's runs folder (it was removed, or the link comes from "
                             "another server); upload the CSV again")
    return path


def _uploads(root: str | os.PathLike[str]) -> list[Path]:
    """Every stored upload file, oldest (least recently saved) first."""
    files = [path for path in (Path(root) / UPLOADS_DIR).glob("*/*") if path.is_file() and not path.is_symlink()
             and _UPLOAD_ID.fullmatch(f"{path.parent.name}/{path.name}")]
    return sorted(files, key=lambda path: path.stat().st_mtime)


def discard_upload(root: str | os.PathLike[str], path: str | os.PathLike[str], *,
                   used: Collection[str | os.PathLike[str]] = ()) -> bool:
    """Delete the stored upload at ``path`` (a rejected file) unless a run in ``used`` trains on it.

    Returns True when it was deleted. Paths outside ``root/uploads`` are never touched.
    """
    upload = upload_id(root, path)
    if upload is None or upload in {upload_id(root, other) for other in used}:
        return False
    target = Path(root) / UPLOADS_DIR / upload
    target.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        target.parent.rmdir()  # only when empty
    return True


def prune_uploads(root: str | os.PathLike[str], *, used: Collection[str | os.PathLike[str]] = (),
                  keep: Collection[str | os.PathLike[str]] = (), max_files: int = MAX_UPLOADS,
                  max_bytes: int = MAX_UPLOAD_BYTES, max_age_s: float = UNUSED_UPLOAD_AGE_S) -> list[str]:
    """Cap the uploads folder; return the ids removed.

    Uploads no run uses (``used``: runs' ``data_path`` values) go when older than ``max_age_s``
    seconds, then oldest first while the folder holds more than ``max_files`` files or
    ``max_bytes`` bytes. Uploads in ``used`` or ``keep`` (the one a form shows now) always stay.
    """
    spared = {upload_id(root, path) for path in (*used, *keep)} - {None}
    files = _uploads(root)
    total, count, now, removed = sum(path.stat().st_size for path in files), len(files), time.time(), []
    for path in files:
        upload = f"{path.parent.name}/{path.name}"
        if upload in spared:
            continue
        if now - path.stat().st_mtime > max_age_s or count > max_files or total > max_bytes:
            size = path.stat().st_size
            if discard_upload(root, path):
                removed.append(upload)
                total, count = total - size, count - 1
    return removed


# ---------------------------------------------------------------------- the attack's ROC
def write_roc(folder: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (``fpr``/``tpr`` lists, ``auc``, ...) to ``folder/roc.json`` atomically; return the path."""
    return atomic_write_text(Path(folder) / ROC_FILE, json.dumps(dict(payload)))


def load_roc(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stored ROC of a run exactly as written (``fpr``, ``tpr`` lists, ``auc``, ...), or None when there is none.

    Raises DPExplorerError when the file exists but cannot be read or holds no curve.
    """
    path = Path(folder) / ROC_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DPExplorerError(f"could not read the attack's ROC from {path}: {err}; re-run the attack") from err
    if not isinstance(payload, dict) or "fpr" not in payload or "tpr" not in payload:
        raise DPExplorerError(f"{path} holds no ROC curve (fpr/tpr lists); re-run the attack")
    return payload


def roc_curve(folder: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The run's ROC ready to plot: ``load_roc``'s payload with ``fpr``/``tpr`` as float arrays and ``auc`` set.

    ``auc`` (a fraction, 0.5 = chance) is computed from the curve when not stored. None when the
    run has no usable ROC (no folder, a run that took no step, a failed or running attack, a
    broken file, fewer than two points).
    """
    import numpy as np  # deferred: numpy is heavy for the CLI and store readers that never plot an ROC

    if folder is None:
        return None
    try:
        payload = load_roc(folder)
    except DPExplorerError:
        return None
    if payload is None:
        return None
    fpr = np.asarray(payload.get("fpr", []), dtype=float).ravel()
    tpr = np.asarray(payload.get("tpr", []), dtype=float).ravel()
    if fpr.size < 2 or fpr.shape != tpr.shape:
        return None
    auc = payload.get("auc")
    auc = float(auc) if isinstance(auc, (int, float)) and not isinstance(auc, bool) else math.nan
    if not math.isfinite(auc):
        order = np.argsort(fpr, kind="stable")
        auc = float(np.trapezoid(tpr[order], fpr[order]))
    return {**payload, "fpr": fpr, "tpr": tpr, "auc": auc}


__all__ = [
    "ARTIFACTS_DIR",
    "CHECKPOINT_FILE",
    "EPOCHS_FILE",
    "HISTORY_FILE",
    "MODEL_FILE",
    "ROC_FILE",
    "SUMMARY_FILE",
    "UPLOADS_DIR",
    "StorageNotWritable",
    "UploadNotFound",
    "artifacts_path",
    "check_writable",
    "discard_upload",
    "load_roc",
    "load_weights",
    "prune_uploads",
    "remove_artifacts",
    "roc_curve",
    "safe_filename",
    "save_result",
    "save_upload",
    "upload_id",
    "upload_path",
    "write_roc",
]
