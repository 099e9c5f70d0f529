"""Command line: ``python -m dpcore train|datasets|check|...``, the same core the dashboard uses.

Bad input never shows a traceback: the command prints one line saying what is
wrong and what to do, and exits with status 2. A failed privacy check exits 1. Output paths
(``train -o``, ``check --report``, ``report -o``) are checked before any training, and an I/O
error (a full disk, a read-only folder) exits 2, never 1.

Modules that load torch (training, attacks, sweeps, the accountants, reports) are imported inside
the commands that use them, each marked ``# deferred: torch``, so ``import dpcore.cli`` stays light.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import typing
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs.grid import DEFAULT_EPSILONS  # light (config and errors only): `sweep --help` needs no torch
from dpcore.privacy.bands import format_number
from dpcore.store.runs import DONE, FAILED, RunStore
from dpcore.views.explain import SELECTION_COST
from dpcore.views.help import FIELD_HELP
from dpcore.views.progress import format_duration

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2

# FIELD_HELP (one help phrase per TrainConfig field) lives in dpcore.views.help, shared with the pages.


class UsageError(DPExplorerError):
    """Bad command-line usage (unknown flag, value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, no usage dump
        raise UsageError(f"{message} (see `python -m dpcore {self.prog.split()[-1]} --help`)")


def _probe_writable(folder: Path) -> None:
    """Create and remove a scratch file in ``folder``; OSError when that is not possible."""
    fd, scratch = tempfile.mkstemp(prefix=".dpcore-probe-", dir=folder)
    os.close(fd)
    os.unlink(scratch)


def check_output(path: str | os.PathLike[str], *, folder: bool, flag: str) -> Path:
    """``path`` if the command can write its output there; UsageError (exit 2, one line) otherwise.

    Called before any training, so a bad path costs nothing. A file output (``folder=False``) must not
    be a folder and its folder must exist (nothing is created silently); a folder output may be created,
    but only inside an existing folder. Returns ``path`` as a Path.
    """
    target = Path(path).expanduser()
    parent = target.parent
    what = "folder" if folder else "file"
    if not folder and target.is_dir():
        raise UsageError(f"{flag} {target} is a folder; give the path of a file to write")
    if folder and target.exists() and not target.is_dir():
        raise UsageError(f"{flag} {target} is a file; give a folder to save into")
    if not parent.is_dir():
        raise UsageError(f"{flag} {target}: the folder {parent} does not exist; create it first or give another "
                         f"{what}")
    try:
        _probe_writable(target if folder and target.is_dir() else parent)
        if target.is_file():
            with open(target, "r+b"):  # opened for writing, changed nothing
                pass
    except OSError as err:
        raise UsageError(f"{flag} {target} cannot be written ({err.strerror or err}); give a {what} you can "
                         "write to") from err
    return target


def _field_type(field: dataclasses.Field) -> Any:
    hint = typing.get_type_hints(TrainConfig)[field.name]
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    return args[0]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per TrainConfig field (booleans get --x/--no-x)."""
    for field in dataclasses.fields(TrainConfig):
        if field.name == "extra":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(field)
        help_text = FIELD_HELP.get(field.name, "")
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=None, help=help_text,
                                metavar=field.name.upper())
    parser.add_argument("--no-dp", dest="private", action="store_false",
                        help="same as --no-private: train the non-private baseline")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed flags; flags not given keep the dataclass defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {key: value for key, value in vars(args).items() if key in names and value is not None}
    return TrainConfig(**given)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return format_number(value, spec, infinity="inf")  # plain ASCII for terminals and logs


# ---------------------------------------------------------------------- commands
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register a subcommand: ``configure`` adds its arguments, the decorated function runs it."""
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (help_text, configure, run)
        return run
    return register


def _add_ray_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", metavar="ADDRESS", help="run trainings as Ray tasks: 'auto' (the cluster "
                        "on this machine), 'local' (start one) or HOST:PORT (default: $DPEXPLORER_RAY_ADDRESS)")


def _ray_address(args: argparse.Namespace) -> str | None:  # --ray-address, $DPEXPLORER_RAY_ADDRESS, or None
    return (getattr(args, "ray_address", None) or os.environ.get("DPEXPLORER_RAY_ADDRESS", "")).strip() or None


def _configure_train(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("-o", "--output", help="directory to save model, checkpoint and metrics into")
    _add_ray_address(parser)
    rendezvous = parser.add_argument_group("several machines (with --nproc N: N processes on each; torchrun's "
                                           "rendezvous, the same command on every machine)")
    rendezvous.add_argument("--nnodes", type=int, default=1, help="machines taking part (default 1)")
    rendezvous.add_argument("--node-rank", type=int, default=0, help="this machine's rank, 0 on the master")
    rendezvous.add_argument("--master-addr", help="address of the master machine (node rank 0)")
    rendezvous.add_argument("--master-port", type=int, help="free port on the master machine, e.g. 29500")


def _configure_datasets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", metavar="NAME", help="download NAME into the local cache")


def _print_caveats(status: Any) -> None:
    """One line per caveat of a run's epsilon (``dpcore.privacy.caveats``), and the proven bound beside it."""
    if status.note(".3f"):
        print(f"epsilon is not a plain guarantee: {status.text('.3f', symbol='epsilon')}")
    for explanation in status.explanations():
        print(f"  note: {explanation}")


@command("train", "train one model (DP or baseline) and print per-epoch metrics", _configure_train)
def cmd_train(args: argparse.Namespace) -> int:
    from dpcore.jobs.training import membership_summary, save_roc, train_and_evaluate  # deferred: torch
    from dpcore.privacy.caveats import epsilon_status  # deferred: torch (accountants)

    cfg = config_from_args(args)
    quiet = args.json
    if args.output:
        check_output(args.output, folder=True, flag="-o/--output")

    def on_epoch(row: dict[str, Any]) -> None:
        if not quiet:
            print(f"epoch {row['epoch']:>3}/{row['total_epochs']}  loss {_fmt(row['train_loss'])}  "
                  f"epsilon {_fmt(row['epsilon'], '.3f')}  train acc {_fmt(row['train_accuracy'])}  "
                  f"test acc {_fmt(row['test_accuracy'])}  attack AUC {_fmt(row.get('mia_auc'))}", flush=True)

    if cfg.nproc > 1:
        from dpcore.jobs import distributed  # deferred: torch
        if not distributed.ddp.launched_by_torchrun():
            return _train_under_torchrun(args, cfg)
        trained = distributed.train_rank(cfg, on_epoch=on_epoch)  # in each process torchrun started
        if trained is None:
            return EXIT_OK  # not rank 0: rank 0 prints and saves
        result, attack = trained
    elif _ray_address(args):
        from dpcore.jobs.ray_executor import train_on_ray  # deferred: torch, and Ray only when asked for

        result, attack = train_on_ray(cfg, address=_ray_address(args), on_epoch=on_epoch)
    else:
        result, attack = train_and_evaluate(cfg, on_epoch=on_epoch)
    summary = {**result.summary(), **(membership_summary(attack) if attack is not None else {})}
    status = epsilon_status(config=result.config, summary=summary)
    summary.update(status.to_dict())
    if args.output:
        result.save(args.output)
        if attack is not None:
            save_roc(args.output, attack)
    if quiet:
        print(json.dumps({"config": result.config.to_dict(), "summary": summary}, indent=2))
        return EXIT_OK
    print(f"{result.status}: {result.stop_reason}")
    if result.config.private:
        print(f"epsilon {_fmt(result.final_epsilon)} at delta {result.config.target_delta:g} "
              f"({result.config.accountant}), sigma {_fmt(result.noise_multiplier)}, "
              f"max_grad_norm {result.config.max_grad_norm:g}, {result.steps} steps, "
              f"final clip fraction {_fmt(result.final_clip_fraction, '.0%')}")
        _print_caveats(status)
    else:
        print("no differential privacy (baseline): epsilon is unbounded")
    for fix in result.fixes:
        print(f"replaced for DP: {fix}")
    print(f"test accuracy {_fmt(result.test_accuracy)}, train accuracy {_fmt(result.train_accuracy)}, "
          f"loss-attack AUC {_fmt(summary.get('mia_auc'))}, device {result.device}, {result.seconds:.1f} s")
    return EXIT_OK


def _train_under_torchrun(args: argparse.Namespace, cfg: TrainConfig) -> int:
    """``train --nproc N``: run this same command in N processes per machine under torchrun (rank 0 prints)."""
    from dpcore.jobs import distributed  # deferred: torch

    distributed.check_nproc(cfg)
    rendezvous = distributed.Rendezvous(nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr,
                                        master_port=args.master_port)
    if not args.json:
        print(f"training in {cfg.nproc} process(es) on each of {args.nnodes} machine(s) under torchrun "
              "(Opacus DPDDP)", flush=True)
    distributed.launch(distributed.torchrun_command(nproc=cfg.nproc, module_args=["dpcore", *args.argv],
                                                    rendezvous=rendezvous))
    return EXIT_OK


@command("datasets", "list datasets and whether each is offline, cached or needs a download",
         _configure_datasets)
def cmd_datasets(args: argparse.Namespace) -> int:
    from dpcore.engine import data  # deferred: torch

    if args.fetch:
        path = data.fetch_dataset(args.fetch)
        print(f"{args.fetch}: cached at {path}")
        return EXIT_OK
    table = data.list_datasets()
    print(table.to_string(index=False))
    return EXIT_OK


# ``dpcore.attacks.ATTACKS`` and ``POOL_SIZES`` written out, so that `attack --help` loads no torch
# (tests/test_cli_help.py checks that they match).
ATTACK_NAMES: tuple[str, ...] = ("loss", "logit", "lira-online", "lira-offline", "rmia")
POOL_SIZES: dict[str, int] = {"quick": 8, "standard": 16, "thorough": 64}


def _configure_attack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="id of a finished training run in the runs directory")
    parser.add_argument("--attacks", default="loss,lira-online,rmia",
                        help=f"comma-separated attacks: {', '.join(ATTACK_NAMES)} (default: loss,lira-online,rmia)")
    parser.add_argument("--models", type=int, default=POOL_SIZES["standard"], metavar="M",
                        help=f"reference models, even (presets {POOL_SIZES}; default {POOL_SIZES['standard']})")
    parser.add_argument("--canaries", type=int, default=0, metavar="N",
                        help="also run a one-run canary audit with N canaries (one extra training; 0 = skip; "
                             "white-box: up to 4000 finish in seconds on synthetic/digits, at most half the "
                             "model's parameters; black-box: at most half the members)")
    parser.add_argument("--canary-mode", choices=["white-box", "black-box"], default="white-box",
                        help="white-box (default): gradient canaries inserted into a DP-SGD run with this run's "
                             "sigma, q, C and steps, scored from every step's privatised gradient, the strongest "
                             "one-run audit; black-box: mislabelled training examples scored from the final model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reference-pool halves and bootstraps")
    _add_ray_address(parser)
    parser.add_argument("--runs-dir", default=None, help="runs directory (default $DPEXPLORER_RUNS_DIR or ./runs)")
    parser.add_argument("--json", action="store_true", help="print the stored result as JSON only")


@command("attack", "membership-inference attacks and an empirical epsilon lower bound for a stored run",
         _configure_attack)
def cmd_attack(args: argparse.Namespace) -> int:
    from dpcore.jobs import attack as audit  # deferred: torch
    from dpcore.jobs import attack_results  # deferred: torch
    from dpcore.jobs import queue as jobs  # deferred: torch

    if _ray_address(args):  # the queue's reference models go to Ray (get_queue reads the setting)
        os.environ["DPEXPLORER_RAY_ADDRESS"] = _ray_address(args)
    queue = jobs.get_queue(args.runs_dir)
    attack_id = audit.submit_attack(queue, args.run_id, attacks=args.attacks.split(","), n_models=args.models,
                                    seed=args.seed, canaries=args.canaries, canary_mode=args.canary_mode)
    last_phase = None
    try:
        while (record := queue.store.get(attack_id)).active:
            phase = record.summary.get("phase")
            if phase and phase != last_phase and not args.json:
                print(phase, flush=True)
                last_phase = phase
            time.sleep(0.2)
    except KeyboardInterrupt:
        queue.cancel(attack_id)
        queue.wait(attack_id, timeout=30)
        raise
    finally:
        jobs.shutdown()
    if record.status != "done":
        raise DPExplorerError(f"attack job {attack_id} {record.status}: {record.error_message or record.stop_reason}")
    result = attack_results.load_attack_result(queue.store, args.run_id)
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    print(attack_results.tpr_table(result).to_string(index=False))
    bounds = attack_results.epsilon_table(result)
    for row in bounds.itertuples():
        print(f"{row.label}: {row.detail}")
    if result["epsilon"].get("canary"):
        print(audit.CANARY_COMPARE_NOTE)
    print(f"stored in {queue.store.artifacts_path(args.run_id) / audit.ATTACK_FILE} ({result['seconds']:.1f} s)")
    return EXIT_OK


# ---------------------------------------------------------------------- sweeps, reports, the CI gate
def _number_list(kind: type) -> Callable[[str], list[Any]]:
    """argparse type for '0.5,1,2': a list of ``kind``."""
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s like 1,2,4, got {text!r}") \
                from err
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
        return values
    return parse


def _configure_sweep(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--epsilons", type=_number_list(float), metavar="E,E,...",
                        help="target epsilons of the grid (default: "
                             f"{','.join(f'{e:g}' for e in DEFAULT_EPSILONS)}; --target-epsilon gives one)")
    parser.add_argument("--max-grad-norms", type=_number_list(float), metavar="C,C,...",
                        help="clipping bounds of the grid (default: --max-grad-norm or the recipe's)")
    parser.add_argument("--seeds", type=_number_list(int), metavar="S,S,...",
                        help="training seeds; several give error bars (default: --seed or 0)")
    parser.add_argument("--no-baseline", dest="include_baseline", action="store_false",
                        help="leave out the non-private baseline runs")
    parser.add_argument("--resume", metavar="SWEEP_ID",
                        help="finish a stored sweep: re-run its cells that are not done (other grid flags ignored)")
    parser.add_argument("--retry-failed", action="store_true", help="with --resume, also re-run failed cells")
    parser.add_argument("--name", help="a name for the sweep (default: a description of the grid)")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and the estimated time, run nothing")
    _add_ray_address(parser)
    parser.add_argument("--runs-dir", default=None, help="runs directory (default $DPEXPLORER_RUNS_DIR or ./runs)")


def sweep_spec_from_args(args: argparse.Namespace) -> Any:
    """The SweepSpec the ``sweep`` flags describe (grid flags win over their one-value config flags)."""
    from dpcore.jobs.sweep import DEFAULT_EPSILONS, DEFAULT_VALIDATION_FRACTION, SweepSpec  # deferred: torch

    if args.noise_multiplier is not None:
        raise ConfigError("a sweep calibrates the noise to each target epsilon; use --epsilons instead of "
                          "--noise-multiplier")
    if args.private is False:
        raise ConfigError("a sweep varies epsilon; to train only the baseline use `python -m dpcore train --no-dp`")
    if args.nproc not in (None, 1):
        raise ConfigError("a sweep trains each member in one process; drop --nproc (spread members over machines "
                          "with Ray) or train one config with `python -m dpcore train --nproc N`")
    base = config_from_args(args).replace(private=True, target_epsilon=None, noise_multiplier=None)
    epsilons = args.epsilons or ([args.target_epsilon] if args.target_epsilon is not None else DEFAULT_EPSILONS)
    clips = args.max_grad_norms or [base.resolve().max_grad_norm]
    seeds = args.seeds or [args.seed if args.seed is not None else 0]
    fraction = args.validation_fraction if args.validation_fraction is not None else DEFAULT_VALIDATION_FRACTION
    return SweepSpec(base=base, epsilons=tuple(epsilons), max_grad_norms=tuple(clips), seeds=tuple(seeds),
                     include_baseline=args.include_baseline, validation_fraction=fraction)


@command("sweep", "train a grid of target epsilons x clipping bounds x seeds (resumable), print the frontier; "
                  "exit 1 if a run failed",
         _configure_sweep)
def cmd_sweep(args: argparse.Namespace) -> int:
    from dpcore.jobs import sweep as sweeps  # deferred: torch
    from dpcore.jobs.queue import JobQueue  # deferred: torch
    from dpcore.store.records import StoredRun  # deferred: torch (accountants)
    from dpcore.views import frontier as frontiers  # deferred: torch (accountants)

    store = RunStore(args.runs_dir)
    if args.resume:
        sweep = sweeps.load_sweep(store, args.resume)
        spec = sweep.spec
    else:
        spec = sweep_spec_from_args(args).validate()
        sweep = None
    guess = sweeps.estimate(spec, store=store)
    print(f"{spec.describe()}; about {format_duration(guess.seconds)} ({guess.basis})", flush=True)
    if args.dry_run:
        for member in sweeps.expand(spec):
            print(f"  {member.key}")
        return EXIT_OK
    address = _ray_address(args)
    queue = JobQueue(store, max_pending=max(spec.n_runs, 1), executor="ray" if address else "process",
                     ray_address=address)
    if address:
        print(f"jobs run on {queue.describe_executor()}", flush=True)
    try:
        if sweep is None:
            sweep = sweeps.submit_sweep(queue, spec, name=args.name, window=None, estimate_s=guess.seconds)
            print(f"sweep {sweep.id}: {spec.n_runs} runs queued in {store.root}", flush=True)
            reported: set[str] = set()
        else:
            reported = {m.run_id for m in sweeps.member_states(store, sweep) if m.state == DONE}
            queued = sweeps.resume_sweep(queue, sweep.id, retry_failed=args.retry_failed, window=None)
            print(f"sweep {sweep.id}: {len(reported)} run(s) already done, {len(queued)} queued again", flush=True)
        while True:
            states = sweeps.member_states(store, sweep)
            for member in states:
                run = StoredRun.from_record(member.run) if member.run is not None else None
                settled = member.state in (FAILED, "cancelled") or (
                    member.state == DONE and run is not None and run.mia_status != "pending")
                if run is not None and member.run_id and settled and member.run_id not in reported:
                    reported.add(member.run_id)
                    done = sum(m.state == DONE for m in states)
                    note = run.epsilon_status.note(".3f")
                    print(f"[{done}/{len(states)}] {member.key}: {member.state}  "
                          f"epsilon {_fmt(run.final_epsilon)}{f' ({note})' if note else ''}  "
                          f"test acc {_fmt(run.test_accuracy)}  AUC {_fmt(run.mia_auc)}"
                          + (f"  ({run.error_message})" if member.state == FAILED else ""), flush=True)
            progress = sweeps.sweep_progress(store, sweep, states=states)
            if progress.status != "running":
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        queue.shutdown(timeout=30)
        if sweep is not None:
            print(f"stopped; resume with `python -m dpcore sweep --resume {sweep.id}`", file=sys.stderr)
        raise
    queue.shutdown(timeout=30)
    front = frontiers.frontier(frontiers.run_points(sweeps.sweep_runs(store, sweep)))
    if not front.empty:
        print()
        print(front[["label", "epsilon", "max_grad_norm", "chosen_on", "validation_accuracy", "test_accuracy",
                     "test_accuracy_std", "mia_auc", "mia_tpr_at_1pct_fpr", "n_runs"]].to_string(
                         index=False, float_format=lambda v: f"{v:.3f}"))
        note = frontiers.frontier_note(front)
        print(("\nNOTE: " + note + "\n" if note else "\n") + SELECTION_COST.replace("ε", "epsilon"))
    print(f"\n{progress.done}/{progress.total} runs done. Report: "
          f"python -m dpcore report {sweep.id} -o report.html")
    return EXIT_OK if progress.status == "done" else EXIT_CHECK_FAILED


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("identifier", metavar="RUN_OR_SWEEP",
                        help="a run id, run ids joined by commas (a side-by-side comparison) or a sweep id (sw-...)")
    parser.add_argument("-o", "--output", help="HTML file to write (default dp-explorer-report-<id>.html)")
    parser.add_argument("--runs-dir", default=None, help="runs directory (default $DPEXPLORER_RUNS_DIR or ./runs)")


@command("report", "write a self-contained HTML report (opens offline) of a run, a comparison or a sweep",
         _configure_report)
def cmd_report(args: argparse.Namespace) -> int:
    from dpcore.views.report import report_filename, write_report  # deferred: torch

    target = check_output(args.output or report_filename(args.identifier), folder=False, flag="-o/--output")
    path = write_report(RunStore(args.runs_dir), args.identifier, target)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return EXIT_OK


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _configure_check(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--max-epsilon", type=_positive, default=10.0, metavar="E",
                        help="fail when the epsilon spent is not below E (default 10)")
    parser.add_argument("--max-auc", type=_fraction, default=0.60, metavar="A",
                        help="fail when the loss-attack AUC is not below A (default 0.6; 0.5 = chance)")
    parser.add_argument("--min-accuracy", type=_fraction, default=0.55, metavar="X",
                        help="fail when the test accuracy is not above X (default 0.55)")
    parser.add_argument("--report", metavar="FILE", help="also write an HTML report of this run to FILE")
    parser.add_argument("--allow-reproducible", action="store_true",
                        help="let a --reproducible run pass (its noise follows the seed: NOT private against anyone "
                             "who knows the seed; for tests and teaching only)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON only")


@command("check", "privacy gate for CI: train, attack, check; exit 1 if a gating check fails", _configure_check)
def cmd_check(args: argparse.Namespace) -> int:
    from dpcore.jobs.training import membership_summary, train_and_evaluate  # deferred: torch
    from dpcore.privacy.caveats import epsilon_status  # deferred: torch (accountants)
    from dpcore.privacy.checks import SECRET_NOISE, gate_checks, run_checks  # deferred: torch (accountants)
    from dpcore.views.report import ReportRun, run_report_html  # deferred: torch

    cfg = config_from_args(args)
    cfg.validate()
    quiet = args.json
    if args.report:
        check_output(args.report, folder=False, flag="--report")
    if not quiet:
        print(f"training {cfg.label()}", flush=True)

    def on_epoch(row: dict[str, Any]) -> None:
        if not quiet:
            print(f"epoch {row['epoch']:>3}/{row['total_epochs']}  epsilon {_fmt(row['epsilon'])}  "
                  f"test acc {_fmt(row['test_accuracy'])}", flush=True)

    result, attack = train_and_evaluate(cfg, on_epoch=on_epoch)
    summary = {**result.summary(), **(membership_summary(attack) if attack is not None else {})}
    status = epsilon_status(config=result.config, summary=summary)
    summary.update(status.to_dict())
    config = result.config.to_dict()
    thresholds = dict(max_epsilon=args.max_epsilon, max_auc=args.max_auc, min_accuracy=args.min_accuracy)
    checks = run_checks(config, summary, **thresholds, allow_reproducible=args.allow_reproducible)
    checked_by = status.bound_accountant if status.bound is not None else None
    failed = [check for check in gate_checks(checks) if check.passed is not True]  # advisory checks never fail
    if args.report:
        run = ReportRun.from_result(result, attack=attack, summary=summary)
        Path(args.report).write_text(run_report_html(run, thresholds={
            **thresholds, "allow_reproducible": args.allow_reproducible}), encoding="utf-8")
    if quiet:
        print(json.dumps({"passed": not failed, "checks": [c.to_dict() for c in checks], "summary": summary,
                          "epsilon_checked": status.bound, "epsilon_checked_by": checked_by},
                         indent=2, default=str))
        return EXIT_CHECK_FAILED if failed else EXIT_OK
    epsilon = "inf (no DP)" if not result.config.private else _fmt(result.final_epsilon)
    print(f"epsilon {epsilon} at delta {result.config.target_delta:g}, test accuracy "
          f"{_fmt(result.test_accuracy)}, loss-attack AUC {_fmt(summary.get('mia_auc'))}")
    if result.config.private:
        _print_caveats(status)
        if checked_by is not None:
            print(f"budget checked with the {checked_by.upper()} accountant (a proven bound): "
                  f"epsilon {_fmt(status.bound)}")
    width = max(len(check.name) for check in checks)
    for check in checks:
        verdict = {True: "PASS", False: "WARN" if check.advisory else "FAIL", None: "N/A "}[check.passed]
        value = "seeded" if check.name == SECRET_NOISE else _fmt(check.value)
        print(f"{verdict}  {check.name:<{width}}  {value}  ({check.description})"
              + ("  [advisory]" if check.advisory else ""))
    if args.report:
        print(f"report: {args.report}")
    if failed:
        print(f"gate failed: {len(failed)} of {len(gate_checks(checks))} checks did not pass")
        return EXIT_CHECK_FAILED
    print(f"gate passed: all {len(gate_checks(checks))} checks pass" + (
        f" ({len(checks) - len(gate_checks(checks))} advisory, not gating)" if len(gate_checks(checks)) < len(checks)
        else ""))
    return EXIT_OK


def build_parser(*, commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser. Only the subcommands named in ``commands`` (None: all) get their arguments; the
    others are listed with their one-line help, so ``--help`` and ``<cmd> --help`` never import torch."""
    parser = _Parser(prog="dpcore", description="DP Explorer core: DP-SGD training, accounting and attacks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (help_text, configure, _) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if commands is None or name in commands:
            configure(command_parser)
    return parser


def named_command(argv: Sequence[str]) -> set[str]:
    """The subcommand ``argv`` names (its first word that is not an option) as a one-item set; empty if none."""
    word = next((word for word in argv if not word.startswith("-")), None)
    return {word} if word in COMMANDS else set()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    parser = build_parser(commands=named_command(sys.argv[1:] if argv is None else argv))
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # argparse leaves these to the top parser, whose error would not name the command
            where = f"{args.command} --help" if args.command else "--help"
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `python -m dpcore {where}`)")
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --nproc N` runs in each process
        return COMMANDS[args.command][2](args)
    except DPExplorerError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a file or folder could not be read or written: never exit 1 ("a check failed")
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"error: {err.strerror or err}{where}; check the paths and free disk space", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
