"""Shared test set-up: every test gets private runs/data directories, never the user's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # pages import `from pages import ui`, as under `streamlit run app.py`
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Point the run store and dataset cache at per-test temporary folders."""
    monkeypatch.setenv("DPEXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DPEXPLORER_DATA_DIR", str(tmp_path / "data-cache"))
    return tmp_path
