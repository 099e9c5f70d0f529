"""CLI output paths (issue 13): checked before any training, one line and exit 2; I/O errors never exit 1."""

from __future__ import annotations

import pytest

from dpcore import cli
from dpcore.cli import EXIT_USAGE, main
from dpcore.jobs import training


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Training must not start for a bad output path: reaching it fails the test at once."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the output path was checked")

    monkeypatch.setattr(training, "train_and_evaluate", refuse)


def _bad_paths(tmp_path) -> dict[str, tuple[str, str]]:
    """name -> (path, words the one-line error must contain)."""
    folder = tmp_path / "existing"
    folder.mkdir()
    return {
        "proc": ("/proc/dpcore-x/report.html", "does not exist"),
        "proc-file": ("/proc/x", "cannot be written"),
        "missing-parent": (str(tmp_path / "missing" / "dir" / "x.html"), "does not exist"),
        "folder": (str(folder), "is a folder"),
    }


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("case", ["proc", "proc-file", "missing-parent", "folder"])
def test_check_report_path_is_checked_before_training(case, tmp_path, capsys):
    path, words = _bad_paths(tmp_path)[case]
    code = main(["check", "--dataset", "synthetic", "--target-epsilon", "3", "--epochs", "1", "--report", path])
    assert code == EXIT_USAGE
    line = _one_line_error(capsys)
    assert words in line and "--report" in line
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("case", ["proc", "proc-file", "missing-parent"])
def test_train_output_folder_is_checked_before_training(case, tmp_path, capsys):
    path, words = _bad_paths(tmp_path)[case]
    code = main(["train", "--dataset", "synthetic", "--epochs", "1", "-o", path])
    assert code == EXIT_USAGE
    line = _one_line_error(capsys)
    assert words in line and "-o/--output" in line
    assert not (tmp_path / "missing").exists()


def test_train_output_that_is_a_file_is_refused(tmp_path, capsys):
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"x")
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "-o", str(existing)]) == EXIT_USAGE
    assert "is a file" in _one_line_error(capsys)
    assert existing.read_bytes() == b"x"


def test_report_does_not_create_folders_silently(tmp_path, capsys):
    target = tmp_path / "missing" / "dir" / "x.html"
    assert main(["report", "no-such-run", "-o", str(target), "--runs-dir", str(tmp_path / "runs")]) == EXIT_USAGE
    line = _one_line_error(capsys)
    assert f"the folder {target.parent} does not exist" in line
    assert not (tmp_path / "missing").exists()


def test_good_output_paths_pass_and_are_not_created(tmp_path):
    assert cli.check_output(tmp_path / "r.html", folder=False, flag="-o") == tmp_path / "r.html"
    assert cli.check_output(tmp_path / "new-run", folder=True, flag="-o") == tmp_path / "new-run"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


def test_an_io_error_during_a_command_exits_2_not_1(monkeypatch, capsys):
    def disk_full(args):
        raise OSError(28, "No space left on device", "/reports/r.html")

    help_text, configure, _ = cli.COMMANDS["check"]
    monkeypatch.setitem(cli.COMMANDS, "check", (help_text, configure, disk_full))
    assert main(["check", "--dataset", "synthetic"]) == EXIT_USAGE
    line = _one_line_error(capsys)
    assert "No space left on device" in line and "/reports/r.html" in line
