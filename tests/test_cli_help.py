"""``python -m dpcore --help`` and every ``<cmd> --help`` answer without importing torch (issue 10: a light CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dpcore import cli

ROOT = Path(__file__).resolve().parents[1]

# Runs each help in one fresh interpreter, in order, and says after each whether torch (or opacus) is loaded:
# the first command that loads it is the one named.
PROBE = """
import contextlib, io, json, runpy, sys
seen = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["dpcore", *argv]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        try:
            runpy.run_module("dpcore", run_name="__main__")
        except SystemExit as stop:
            code = stop.code
    seen.append([" ".join(argv), code, "torch" in sys.modules or "opacus" in sys.modules, len(out.getvalue())])
print(json.dumps(seen))
"""


def test_help_of_the_cli_and_of_every_command_imports_no_torch():
    helps = [["--help"], *([name, "--help"] for name in cli.COMMANDS)]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(helps)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [row[0] for row in seen] == [" ".join(argv) for argv in helps]
    for command, code, heavy, printed in seen:
        assert code == 0 and printed > 100, (command, code, printed)  # the help was printed
        assert not heavy, f"`python -m dpcore {command}` imported torch"


def test_a_command_still_gets_its_arguments_and_the_full_parser_has_them_all():
    parser = cli.build_parser()
    args = parser.parse_args(["attack", "20250101-000000-abcdef", "--models", "8"])
    assert (args.run_id, args.models) == ("20250101-000000-abcdef", 8)
    assert cli.named_command(["sweep", "--epsilons", "1,2"]) == {"sweep"}
    assert cli.named_command(["--help"]) == set() and cli.named_command(["nonsense"]) == set()
    lean = cli.build_parser(commands={"report"})
    assert lean.parse_args(["report", "x"]).identifier == "x"


def test_the_attack_names_and_pool_sizes_in_the_help_match_the_registry():
    from dpcore.attacks import ATTACKS, POOL_SIZES  # deferred: torch (the light copies must not drift)

    assert tuple(ATTACKS) == cli.ATTACK_NAMES
    assert dict(POOL_SIZES) == cli.POOL_SIZES
