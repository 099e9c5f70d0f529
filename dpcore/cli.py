"""Command line: ``python -m dpcore train|datasets|check|...``, the same core the dashboard uses.

Bad input never shows a traceback: the command prints one line saying what is
wrong and what to do, and exits with status 2. A failed privacy check exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2

FIELD_HELP = {
    "dataset": "dataset name (see `python -m dpcore datasets`)",
    "model": "model name: logreg, mlp, cnn, cnn-bn (default: the dataset's recipe)",
    "private": "train with DP-SGD (--no-private trains the non-private baseline)",
    "target_epsilon": "calibrate the noise to spend this epsilon after all epochs",
    "noise_multiplier": "fixed noise multiplier sigma (instead of --target-epsilon)",
    "target_delta": "delta of the (epsilon, delta) guarantee; keep it below 1/N",
    "max_grad_norm": "per-sample gradient clipping bound C",
    "epochs": "passes over the training set",
    "batch_size": "logical (expected) batch size",
    "physical_batch_size": "largest batch held in memory (BatchMemoryManager when smaller)",
    "lr": "learning rate",
    "optimizer": "sgd (with momentum) or adam",
    "momentum": "SGD momentum",
    "accountant": "privacy accountant: rdp, prv or gdp",
    "grad_sample_mode": "per-sample gradients: auto, hooks, ghost or functorch",
    "poisson_sampling": "Poisson sampling of batches (what the accounting assumes)",
    "seed": "random seed (runs on CPU are reproducible)",
    "device": "auto, cpu, cuda or mps",
    "epsilon_limit": "hard stop: never take a step that would spend more than this epsilon",
    "data_path": "CSV file for --dataset csv",
    "label_column": "label column of the CSV",
}


class UsageError(DPExplorerError):
    """Bad command-line usage (unknown flag, value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, no usage dump
        raise UsageError(f"{message} (see `python -m dpcore {self.prog.split()[-1]} --help`)")


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
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


# ---------------------------------------------------------------------- commands
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register a subcommand: ``configure`` adds its arguments, the decorated function runs it."""
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (help_text, configure, run)
        return run
    return register


def _configure_train(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("-o", "--output", help="directory to save model, checkpoint and metrics into")


def _configure_datasets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", metavar="NAME", help="download NAME into the local cache")


@command("train", "train one model (DP or baseline) and print per-epoch metrics", _configure_train)
def cmd_train(args: argparse.Namespace) -> int:
    from dpcore.attacks import loss_threshold_attack
    from dpcore.training import train

    cfg = config_from_args(args)
    quiet = args.json

    def on_epoch(row: dict[str, Any]) -> None:
        if not quiet:
            print(f"epoch {row['epoch']:>3}/{row['total_epochs']}  loss {_fmt(row['train_loss'])}  "
                  f"epsilon {_fmt(row['epsilon'], '.3f')}  train acc {_fmt(row['train_accuracy'])}  "
                  f"test acc {_fmt(row['test_accuracy'])}", flush=True)

    result = train(cfg, on_epoch=on_epoch)
    attack = loss_threshold_attack(result.model, result.data)
    summary = {**result.summary(), "mia_auc": attack.auc, "mia_tpr_at_1pct_fpr": attack.tpr_at_fpr(0.01)}
    if args.output:
        result.save(args.output)
    if quiet:
        print(json.dumps({"config": result.config.to_dict(), "summary": summary}, indent=2))
        return EXIT_OK
    print(f"{result.status}: {result.stop_reason}")
    if result.config.private:
        print(f"epsilon {_fmt(result.final_epsilon)} at delta {result.config.target_delta:g} "
              f"({result.config.accountant}), sigma {_fmt(result.noise_multiplier)}, "
              f"max_grad_norm {result.config.max_grad_norm:g}, {result.steps} steps, "
              f"final clip fraction {_fmt(result.final_clip_fraction, '.0%')}")
    else:
        print("no differential privacy (baseline): epsilon is unbounded")
    for fix in result.fixes:
        print(f"replaced for DP: {fix}")
    print(f"test accuracy {_fmt(result.test_accuracy)}, train accuracy {_fmt(result.train_accuracy)}, "
          f"loss-attack AUC {_fmt(attack.auc)}, device {result.device}, {result.seconds:.1f} s")
    return EXIT_OK


@command("datasets", "list datasets and whether each is offline, cached or needs a download",
         _configure_datasets)
def cmd_datasets(args: argparse.Namespace) -> int:
    from dpcore import data

    if args.fetch:
        path = data.fetch_dataset(args.fetch)
        print(f"{args.fetch}: cached at {path}")
        return EXIT_OK
    table = data.list_datasets()
    print(table.to_string(index=False))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dpcore", description="DP Explorer core: DP-SGD training, accounting and attacks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return COMMANDS[args.command][2](args)
    except DPExplorerError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
