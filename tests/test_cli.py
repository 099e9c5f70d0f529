"""`python -m dpcore`: output, JSON, and exit code 2 with one line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dpcore.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_train_prints_epochs_and_summary(capsys):
    code = main(["train", "--dataset", "synthetic", "--target-epsilon", "3", "--epochs", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "epoch   1/2" in out and "epoch   2/2" in out
    assert "finished:" in out and "at delta 1e-05 (rdp)" in out and "loss-attack AUC" in out


def test_train_json_is_machine_readable(capsys, tmp_path):
    code = main(["train", "--dataset", "synthetic", "--no-dp", "--epochs", "1", "--json", "-o", str(tmp_path / "r")])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["config"]["private"] is False
    assert payload["summary"]["final_epsilon"] is None  # infinite: no DP
    assert 0.0 <= payload["summary"]["mia_auc"] <= 1.0
    assert (tmp_path / "r" / "model.pt").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--target-epsilon", "-1"], "target_epsilon must be in (0"),
        (["train", "--target-epsilon", "abc"], "invalid float value: 'abc'"),
        (["train", "--epochs", "3"], "needs target_epsilon or noise_multiplier"),
        (["train", "--dataset", "nope", "--target-epsilon", "3"], "nope"),
        (["train", "--bogus-flag"], "unrecognized arguments: --bogus-flag (see `python -m dpcore train --help`)"),
        (["report", "x", "--runs-dir", "{file}"], "is a file, not a folder; point DPEXPLORER_RUNS_DIR"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["train", "--target-epsilon", "3", "--target-delta", "0.5"], "target_delta must be below 1/N"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, fragment):
    (tmp_path / "a-file").write_text("not a folder")
    code = main([arg.replace("{file}", str(tmp_path / "a-file")) for arg in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert fragment in err


def test_datasets_lists_status(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "offline" in out and "mnist" in out and "download" in out


def test_module_entry_point_has_no_traceback_on_bad_input():
    proc = subprocess.run([sys.executable, "-m", "dpcore", "train", "--target-epsilon", "nan"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "target_epsilon must be a finite number" in proc.stderr
