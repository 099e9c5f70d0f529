"""`python -m dpcore check`, the privacy gate for CI: exit 0 when all checks pass, 1 when one fails, 2 on bad input."""

from __future__ import annotations

import json
import re

import pytest

from dpcore.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, main

TINY = ["--dataset", "synthetic", "--epochs", "1"]
CHECKS = ("epsilon within budget", "meaningful epsilon", "membership attack near chance", "model is useful")


def test_gate_passes_when_every_check_passes(capsys):
    code = main(["check", *TINY, "--target-epsilon", "3", "--max-epsilon", "5", "--max-auc", "0.99",
                 "--min-accuracy", "0.01"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    for name in CHECKS:
        assert f"PASS  {name}" in out
    assert "gate passed: all 4 checks pass (1 advisory, not gating)" in out
    # the fifth check is advice: whatever it says (PASS, or WARN when clipping is outside 50-80 %), the gate passes
    assert re.search(r"(PASS|WARN)  clipping in the healthy band .*\[advisory\]", out)


def test_gate_fails_on_purpose_with_an_unreachable_accuracy(capsys, tmp_path):
    report = tmp_path / "gate.html"
    code = main(["check", *TINY, "--target-epsilon", "3", "--min-accuracy", "0.99", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == EXIT_CHECK_FAILED
    assert "FAIL  model is useful" in out and "(test accuracy above 0.99)" in out
    assert "PASS  epsilon within budget" in out
    assert "gate failed: 1 of 4 checks did not pass" in out
    html = report.read_text()
    assert "model is useful" in html and "0.99" in html and "<script src=" not in html


def test_gate_fails_a_non_private_model_and_reports_json(capsys):
    code = main(["check", *TINY, "--no-dp", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_CHECK_FAILED
    assert payload["passed"] is False
    verdicts = {check["name"]: check["passed"] for check in payload["checks"]}
    assert verdicts["meaningful epsilon"] is False  # no DP: epsilon is infinite
    assert "epsilon within budget" not in verdicts  # no target to be within
    assert 0.0 <= payload["summary"]["mia_auc"] <= 1.0


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--bogus-flag"], "unrecognized arguments"),
    (["--max-auc", "3"], "--max-auc: must be a fraction between 0 and 1"),
    (["--min-accuracy", "-0.1"], "--min-accuracy: must be a fraction"),
    (["--max-epsilon", "0"], "--max-epsilon: must be a finite number > 0"),
    (["--max-epsilon", "abc"], "--max-epsilon"),
    (["--target-epsilon", "-1"], "target_epsilon must be in (0"),
    (["--dataset", "nope", "--target-epsilon", "3"], "nope"),
    (["--epochs", "1"], "needs target_epsilon or noise_multiplier"),
])
def test_gate_bad_input_exits_2_with_one_line(argv, fragment, capsys):
    code = main(["check", *argv])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err



LENIENT = ["--max-auc", "0.99", "--min-accuracy", "0.01"]  # only the privacy checks can fail


def test_gate_checks_a_gdp_run_with_rdp_not_the_gdp_number(capsys):
    # The seed config: GDP calibrates sigma to "epsilon = 3.000", within the 10 % slack on its own number.
    # (the seed's schedule, given explicitly: q = 1/13, 10 epochs = 130 steps; the recipe now trains 20 epochs)
    code = main(["check", "--dataset", "synthetic", "--epochs", "10", "--batch-size", "64", "--accountant", "gdp",
                 "--target-epsilon", "3", *LENIENT])
    out = capsys.readouterr().out
    assert code == EXIT_CHECK_FAILED
    assert "epsilon 3.000 at delta" in out  # what GDP reports ...
    assert "GDP approximation; RDP bound 3.77" in out  # ... marked, with the proven bound beside it
    assert "budget checked with the RDP accountant" in out
    assert re.search(r"FAIL  epsilon within budget +3\.774 .*by the RDP accountant", out)
    assert "PASS  meaningful epsilon" in out


def test_gate_fails_a_reproducible_run_unless_allowed(capsys):
    argv = ["check", *TINY, "--target-epsilon", "3", "--reproducible", *LENIENT]
    assert main(argv) == EXIT_CHECK_FAILED
    out = capsys.readouterr().out
    assert "FAIL  noise kept secret" in out
    assert "reproducible — not private against anyone who knows the seed" in out
    assert main([*argv, "--allow-reproducible", "--json"]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["passed"] is True and payload["summary"]["reproducible"] is True
    assert {"noise kept secret": True}.items() <= {c["name"]: c["passed"] for c in payload["checks"]}.items()


def test_gate_fails_a_run_without_poisson_sampling_no_proven_bound(capsys):
    code = main(["check", *TINY, "--target-epsilon", "3", "--no-poisson-sampling", *LENIENT])
    out = capsys.readouterr().out
    assert code == EXIT_CHECK_FAILED
    assert "FAIL  epsilon within budget" in out and "FAIL  meaningful epsilon" in out
    assert "no proven bound: the accounting assumes Poisson sampling" in out


def test_train_json_carries_the_caveats_and_the_bound(capsys):
    assert main(["train", *TINY, "--target-epsilon", "3", "--accountant", "gdp", "--json"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["epsilon_is_guarantee"] is False and summary["epsilon_bound_accountant"] == "rdp"
    assert summary["epsilon_bound"] > summary["final_epsilon"]
    assert [c["kind"] for c in summary["epsilon_caveats"]] == ["gdp"]
    assert summary["epsilon_note"].startswith("GDP approximation; RDP bound")
