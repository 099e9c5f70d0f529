"""One training across processes/GPUs: the torchrun launcher and what each rank runs (``TrainConfig.nproc`` > 1).

``launch`` starts ``python -m torch.distributed.run --nproc-per-node N ... -m MODULE ARGS`` (``torchrun_command``;
``--standalone`` on one node, torchrun's rendezvous flags ``--nnodes --node-rank --master-addr --master-port``
across nodes) and turns a failure into one ``DistributedError`` line, never a traceback. Every rank runs the
same training (``dpcore.engine.ddp`` explains DPDDP, the sampler and the noise); rank 0 alone writes: the
store rows and result (``run_training`` with the store), or what the CLI prints and saves, and the
membership attack at the end (``train_rank``). The dashboard's worker runs a stored run this way through
``train_stored_run_distributed``, which starts ``python -m dpcore.jobs.distributed --runs-dir R --run-id ID``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpcore.attacks import AttackResult
from dpcore.config import TrainConfig
from dpcore.engine import ddp
from dpcore.engine.checkpoint import CHECKPOINT_FILE, ResumeState
from dpcore.engine.result import RunResult
from dpcore.engine.training import train
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs.training import run_training
from dpcore.jobs.workers import StopCheck
from dpcore.store.runs import RunStore

STOP_GRACE_S = 60.0  # after a cancel, how long the ranks get to store a 'cancelled' result before they are killed
USAGE_ERROR = re.compile(r"^(?:[\w.]+: )?error: ")  # our CLI's (and argparse's) one-line errors
RANK_PREFIX = re.compile(r"^\[rank(\d+)\]:\s*")  # torch prefixes a rank's traceback lines with it
ROOT_CAUSE_RANK = re.compile(r"Root Cause.*?rank\s*:\s*(\d+)", re.S)  # torchrun's summary of the failure
CONSEQUENCES = ("ChildFailedError", "Connection reset by peer", "Connection closed by peer")  # not the cause
ERROR_LINE = re.compile(r"^(?:(?:[\w.]+: )?error: .+|(?:[\w.]+(?:Error|Exception)|KeyboardInterrupt)\b.*)$")


class DistributedError(DPExplorerError):
    """torchrun could not start the processes, or a rank failed (one line: what failed and why)."""


@dataclass(frozen=True)
class Rendezvous:
    """torchrun's rendezvous across nodes; the default (one node) uses ``--standalone`` with a free port.

    ``nnodes`` machines each run the same command with their own ``node_rank`` (0 on the master), and reach
    rank 0 at ``master_addr:master_port``.
    """

    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    def flags(self) -> list[str]:
        """torchrun's flags for this rendezvous."""
        if self.nnodes == 1 and self.master_addr is None:
            return ["--standalone", "--nnodes", "1"]
        flags = ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank)]
        if self.master_addr is not None:
            flags += ["--master-addr", self.master_addr]
        if self.master_port is not None:
            flags += ["--master-port", str(self.master_port)]
        return flags


def torchrun_command(*, nproc: int, module_args: Sequence[str], rendezvous: Rendezvous | None = None) -> list[str]:
    """The argv that runs ``python -m MODULE_ARGS...`` in ``nproc`` processes per node under torchrun
    (``python -m torch.distributed.run`` through ``dpcore.jobs.torchrun``, which keeps the arguments apart)."""
    return [sys.executable, "-m", "dpcore.jobs.torchrun", "--nproc-per-node", str(nproc),
            *(rendezvous or Rendezvous()).flags(), "--", *module_args]


def check_nproc(cfg: TrainConfig) -> None:
    """ConfigError unless this machine can run ``cfg.nproc`` processes: one CUDA GPU each when CUDA is used,
    else at most one per CPU core (gloo). ``cfg`` is validated first."""
    cfg = cfg.validate()
    if cfg.nproc == 1:
        return
    if cfg.device == "mps":
        raise ConfigError(f"nproc {cfg.nproc} needs CUDA GPUs or the CPU; Apple MPS trains in one process")
    if cfg.device in ("auto", "cuda") and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if cfg.nproc > gpus:
            raise ConfigError(f"nproc {cfg.nproc} asks for one GPU per process, but {gpus} CUDA GPU(s) are visible "
                              f"here; use --nproc {gpus} or fewer")
        return
    if cfg.device == "cuda":
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use device 'auto' or 'cpu'")
    cores = os.cpu_count() or 1
    if cfg.nproc > cores:
        raise ConfigError(f"nproc {cfg.nproc} processes on the CPU, but this machine has {cores} core(s): more "
                          f"processes than cores only slow training down; use --nproc {cores} or fewer")


def failure_line(stderr: str, returncode: int) -> str:
    """The most telling line of a failed torchrun's stderr: a rank's ``error: ...`` line, else the last exception
    line of the rank torchrun names as the root cause (not the other ranks' lost connections), else the last
    exception line, else the exit status."""
    root = ROOT_CAUSE_RANK.search(stderr)
    found: list[tuple[str | None, str]] = []  # (rank or None, line)
    for raw in stderr.splitlines():
        text, rank = raw.strip(), None
        prefix = RANK_PREFIX.match(text)
        if prefix:
            rank, text = prefix.group(1), text[prefix.end():]
        if ERROR_LINE.match(text) and not any(consequence in text for consequence in CONSEQUENCES):
            found.append((rank, text))
    ours = [text for _, text in found if USAGE_ERROR.match(text)]
    if ours:
        return ours[0].split("error: ", 1)[1]
    picked = [item for item in found if root and item[0] == root.group(1)] or found
    if picked:
        rank, text = picked[-1]
        return f"rank {rank}: {text}" if rank is not None else text
    return f"torchrun exited with status {returncode}"


def launch(argv: Sequence[str], *, should_stop: Callable[[], bool] | None = None,
           grace_s: float = STOP_GRACE_S) -> None:
    """Run ``argv`` (a ``torchrun_command``) to the end; its stdout goes to this process's stdout.

    Raises DistributedError with one line (a rank's error, or why torchrun failed) when it exits non-zero.
    ``should_stop`` is polled; once True the ranks get ``grace_s`` seconds to stop on their own (they read the
    same cancel flag) before the whole process group is killed. Ctrl-C kills it too.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as stderr:
        try:
            process = subprocess.Popen(list(argv), stderr=stderr, start_new_session=True, env=_child_env())
        except OSError as err:
            raise DistributedError(f"could not start torchrun: {err.strerror or err}") from err
        stop_at: float | None = None
        try:
            while process.poll() is None:
                if stop_at is None and should_stop is not None and should_stop():
                    stop_at = time.monotonic() + grace_s
                if stop_at is not None and time.monotonic() > stop_at:
                    _kill_group(process)
                time.sleep(0.2)
        except BaseException:
            _kill_group(process)
            raise
        if process.returncode != 0 and stop_at is None:
            stderr.seek(0)
            raise DistributedError(f"distributed training failed: {failure_line(stderr.read(), process.returncode)}")


def _child_env() -> dict[str, str]:
    """This environment, with the folder holding ``dpcore`` first on PYTHONPATH (the ranks import it from any cwd)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(part for part in (here, env.get("PYTHONPATH", "")) if part)
    return env


def _kill_group(process: subprocess.Popen) -> None:
    """Kill torchrun and its ranks (their own process group, see ``start_new_session``)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


# ---------------------------------------------------------------------- inside a rank
def train_rank(cfg: TrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None
               ) -> tuple[RunResult, AttackResult | None] | None:
    """This rank's part of a training torchrun started (the CLI's ``train --nproc N`` in every process).

    Joins the process group, trains; rank 0 gets ``on_epoch`` rows and returns ``(RunResult, AttackResult or
    None)`` like ``train_and_evaluate`` (the attack runs on rank 0 only); other ranks return None.
    """
    rank = ddp.init_from_env(device=cfg.device).rank
    try:
        if rank == 0:
            return run_training(cfg, on_epoch=on_epoch)
        train(cfg)
        return None
    finally:
        ddp.shutdown()


def save_resume(resume: ResumeState, directory: str | Path) -> Path:
    """Write ``resume`` as ``directory/checkpoint.pt`` (the format ``ResumeState.load`` reads); return the path."""
    path = Path(directory) / CHECKPOINT_FILE
    torch.save({"model_state": resume.model_state, "optimizer_state": resume.optimizer_state,
                "accountant_history": [list(segment) for segment in resume.accountant_history],
                "noise_multiplier": resume.noise_multiplier, "epochs_done": resume.epochs_done,
                "steps_done": resume.steps_done, "sample_rate": resume.sample_rate}, path)
    return path


def train_stored_run_distributed(store: RunStore, run_id: str, *, should_stop: Callable[[], bool] | None = None,
                                 resume: ResumeState | None = None) -> None:
    """Train the stored run ``run_id`` (its config has ``nproc`` > 1) under torchrun on this machine.

    Rank 0 writes progress, checkpoints, the result and the attack to ``store`` as a one-process job does; a
    cancel (the store's flag) stops every rank at the next step. Raises ConfigError before starting when the
    machine cannot run that many processes, DistributedError (one line) when a rank fails.
    """
    cfg = store.get(run_id).train_config()
    check_nproc(cfg)
    with tempfile.TemporaryDirectory(prefix="dpcore-resume-") as scratch:
        args = ["dpcore.jobs.distributed", "--runs-dir", str(store.root), "--run-id", run_id]
        if resume is not None:
            save_resume(resume, scratch)
            args += ["--resume-dir", scratch]
        launch(torchrun_command(nproc=cfg.nproc, module_args=args), should_stop=should_stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of each rank for a stored run: ``python -m dpcore.jobs.distributed --runs-dir R --run-id ID``."""
    parser = argparse.ArgumentParser(prog="python -m dpcore.jobs.distributed")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--resume-dir", default=None)
    args = parser.parse_args(argv)
    try:
        store = RunStore(args.runs_dir)
        cfg = store.get(args.run_id).train_config()
        resume = ResumeState.load(args.resume_dir) if args.resume_dir else None
        rank = ddp.init_from_env(device=cfg.device).rank
        try:
            if rank == 0:
                run_training(cfg, store=store, run_id=args.run_id, should_stop=StopCheck(store, args.run_id),
                             resume=resume, checkpoint=True)
            else:
                train(cfg, resume=resume)
        finally:
            ddp.shutdown()
    except DPExplorerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
