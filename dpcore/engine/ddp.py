"""One training across processes: the torch.distributed pieces the trainer uses when torchrun started it.

Under ``torchrun`` every process (rank) runs the same ``train(cfg)``; ``init_from_env`` joins the process
group (NCCL on CUDA, each rank on its own GPU ``LOCAL_RANK``; gloo on the CPU). The model is wrapped in
Opacus' ``DPDDP`` before ``make_private``, so Opacus picks its distributed DP optimizer and its distributed
Poisson sampler; everything here is a no-op in a single process, so the trainer calls it unconditionally.

How the pieces keep the single-process guarantee (opacus 1.6):

- Sampling: each rank holds a fixed (public) shard of the members and includes every example of its
  shard independently with the GLOBAL rate ``q = batch_size / N``; together that is Poisson sampling of
  all N with rate q, the expected global batch is ``batch_size``, and the accountant sees the same
  ``(sigma, q, steps)`` as one process: the same epsilon. Each rank's sampling generator is its own
  secret draw (or, for reproducible runs, its own derived seed: ``stream_purpose``), so shards are
  sampled independently. Opacus' sampler skips a rank's empty batch, which would leave that rank one step
  behind the others and hang the gradient all-reduce; ``keep_empty_batches`` yields it instead.
- Noise: ``DistributedDPOptimizer`` adds Gaussian noise of std ``sigma * C`` on rank 0 ONLY; every rank
  divides its clipped sum by the per-rank expected batch ``batch_size / world``, the all-reduce sums the
  ranks and divides by ``world``. The update is ``(sum of all clipped gradients + one N(0, sigma^2 C^2)
  draw) / batch_size``: exactly the single-process update and noise, not ``world`` draws.
- Bookkeeping: the per-step clip counts, examples and loss are summed over ranks (``global_counts``) so the
  step rows are the global step's; the stop decision is shared (``shared_stop``) so all ranks stop together.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler
from torch import nn
from torch.utils.data import DataLoader

TIMEOUT = datetime.timedelta(minutes=10)  # a rank that died leaves the others waiting at most this long


@dataclass(frozen=True)
class World:
    """This process's place in the training: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> World:
    """This process's ``World`` (rank 0 of 1 outside a process group)."""
    if not is_distributed():
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def describe_world() -> str:
    """' x N processes' in a process group of N (appended to the device description), else ''."""
    size = world().size
    return f" x {size} processes" if size > 1 else ""


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_from_env(*, device: str = "auto") -> World:
    """Join torchrun's process group: NCCL with one GPU per rank (``LOCAL_RANK``) when CUDA is used, else gloo.

    ``device`` is the run's ``TrainConfig.device``. Returns this process's ``World``. A no-op (one process)
    when torchrun did not start this process.
    """
    if not launched_by_torchrun():
        return World()
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)  # torch.device("cuda") now means this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    return world()


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module) -> nn.Module:
    """``DPDDP(model)`` in a process group (it broadcasts rank 0's weights), else ``model`` itself."""
    return DPDDP(model) if is_distributed() else model


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DPDDP`` wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, DPDDP) else model


def stream_purpose(purpose: str) -> str:
    """The reproducible-stream purpose of this rank: ``purpose`` on rank 0 (the single-process stream),
    ``purpose@rank<r>`` on the others, so no two ranks share a sampling stream."""
    rank = world().rank
    return purpose if rank == 0 else f"{purpose}@rank{rank}"


def _reduce(values: list[float], op: dist.ReduceOp) -> list[float]:
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op)
    return [float(value) for value in tensor.cpu()]


def global_counts(clipped: int, seen: int, loss_sum: float) -> tuple[int, int, float]:
    """(clipped per-sample gradients, examples, summed loss) of one logical step over all ranks.

    In one process the arguments come back unchanged. A collective: every rank calls it once per step.
    """
    if not is_distributed():
        return clipped, seen, loss_sum
    total_clipped, total_seen, total_loss = _reduce([clipped, seen, loss_sum], dist.ReduceOp.SUM)
    return int(total_clipped), int(total_seen), total_loss


def shared_stop(should_stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
    """``should_stop`` agreed by all ranks: True on every rank once it is True on any (one collective per call).

    In one process ``should_stop`` itself. In a process group the result is never None, because every
    rank must take part in each check (the trainer polls it once before every logical step).
    """
    if not is_distributed():
        return should_stop

    def agreed() -> bool:
        local = bool(should_stop()) if should_stop is not None else False
        return _reduce([float(local)], dist.ReduceOp.MAX)[0] > 0

    return agreed


class EveryStepSampler(DistributedUniformWithReplacementSampler):
    """Opacus' distributed Poisson sampler, but an empty local batch is yielded, not skipped.

    Every rank then takes exactly ``num_batches`` steps per epoch (the all-reduce needs all of them);
    an empty batch is an ordinary outcome of Poisson sampling and the optimizer still adds its noise.
    """

    def __iter__(self):
        if self.shuffle:  # the shard assignment: public and fixed, as in Opacus
            order = torch.Generator().manual_seed(self.shuffle_seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=order)
        else:
            indices = torch.arange(self.total_size)
        indices = indices[self.rank:self.total_size:self.num_replicas]
        for _ in range(self.num_batches):
            mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            yield indices[mask.nonzero(as_tuple=False).reshape(-1)]


def keep_empty_batches(loader: DataLoader) -> DataLoader:
    """In a process group, ``loader`` (Opacus' distributed DPDataLoader) with its sampler replaced by an
    ``EveryStepSampler`` (same shard, rate, steps and generator); else ``loader`` unchanged."""
    sampler = getattr(loader, "batch_sampler", None)
    if not is_distributed() or not isinstance(sampler, DistributedUniformWithReplacementSampler):
        return loader
    every_step = EveryStepSampler(total_size=sampler.total_size, sample_rate=sampler.sample_rate,
                                  shuffle=sampler.shuffle, shuffle_seed=sampler.shuffle_seed,
                                  steps=sampler.num_batches, generator=sampler.generator)
    return DataLoader(loader.dataset, batch_sampler=every_step, collate_fn=loader.collate_fn,
                      generator=loader.generator, num_workers=loader.num_workers, pin_memory=loader.pin_memory)


__all__ = [
    "EveryStepSampler",
    "World",
    "describe_world",
    "global_counts",
    "init_from_env",
    "is_distributed",
    "keep_empty_batches",
    "launched_by_torchrun",
    "shared_stop",
    "shutdown",
    "stream_purpose",
    "unwrap",
    "world",
    "wrap_model",
]
