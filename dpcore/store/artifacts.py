"""The files of a stored run: its artifacts folder, the files in it, uploaded CSVs, and the ONE ROC loader.

A run's artifacts live in ``<runs root>/artifacts/<run_id>/``: ``model.pt`` (weights),
``checkpoint.pt`` (what continuing needs), ``history.csv``, ``epochs.csv``, ``summary.json``
(written by ``RunResult.save``) and ``roc.json`` (the loss-threshold attack's ROC). Uploaded CSVs
are kept content-addressed in ``<runs root>/uploads/<sha256[:16]>/<name>``. Every write goes
through ``dpcore.atomic``, so a crash never leaves a half-written file.

API (all paths are ``pathlib.Path``):

- ``artifacts_path(root, run_id)``: the run's folder (not created; ValueError for an unsafe id)
- ``save_result(root, run_id, result)``: ``result.save`` into a scratch folder, then moved in
- ``remove_artifacts(root, run_id)``: delete the run's folder (missing is fine)
- ``load_weights(folder, filename)``: a saved state dict (``torch.load(weights_only=True)``)
- ``save_upload(root, data, filename)``: keep uploaded bytes; the same bytes give the same path
- ``write_roc(folder, payload)`` / ``load_roc(folder)``: ``roc.json`` as written / as stored (strict)
- ``roc_curve(folder)``: the ROC ready to plot (numpy ``fpr``/``tpr``, ``auc`` filled in), or None

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = write_roc(folder, {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0]})
>>> roc_curve(folder)["auc"]
0.75
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping
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
        return path
    return atomic_write_bytes(path, bytes(data))


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
    "artifacts_path",
    "load_roc",
    "load_weights",
    "remove_artifacts",
    "roc_curve",
    "safe_filename",
    "save_result",
    "save_upload",
    "write_roc",
]
