"""Shared test set-up: every test gets private runs/data directories, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Point the run store and dataset cache at per-test temporary folders."""
    monkeypatch.setenv("DPEXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DPEXPLORER_DATA_DIR", str(tmp_path / "data-cache"))
    return tmp_path
