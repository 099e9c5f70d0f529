"""How many CPU threads torch gets: one rule for worker processes, the server, ``train()`` and the CLI.

Several OpenMP threads per process on a machine whose cores are already busy do not add speed, they
fight: the seed config (synthetic MLP, 130 DP steps) trained in 0.75 s idle with 1 or 2 threads, but
beside two busy processes on 2 cores took 12.4 s with torch's default 2 threads and 1.2 s with one.
So ``workers x threads`` never exceeds the cores, and a small model gets one thread however many cores
are free (see ``SMALL_MODEL_PARAMS`` for the measured line).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

# Measured with bench/bench_threads.py (one process, 1 vs 2 threads). Quiet 2-core machine (issue 10): the
# seed config (synthetic MLP, 4.5k params, 130 DP steps) 0.75 s with either. The same 2-core machine under
# load (load average 3-7, other engineers' jobs): seed config 1.1 s vs 34.5 s; digits CNN (38k params,
# 90 DP steps) 8.5 s vs 92 s; plain MLPs forward+backward, batch 256, 40 steps, at 3k / 26k / 85k / 301k /
# 1.1M params: 2 threads 6-15x slower at every size. A quiet machine to find where 2 threads start to win
# was not available; every model of the registry on the built-in datasets (3k-38k params) is on the
# "no gain" side, and the line is set above them at 100k (a 28x28 CNN or a 784-input MLP: ~100k) where a
# second thread starts to have enough work per step. Re-measure on a quiet machine to move it.
SMALL_MODEL_PARAMS = 100_000
THREADS_ENV = "DPEXPLORER_THREADS"
_baseline = torch.get_num_threads()  # torch's choice at import, or what set_process_threads set: else the user's
_process_workers = 1  # processes sharing this machine's cores, as set_process_threads was told


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def torch_threads_for(*, workers: int, cores: int, model_params: int | None = None) -> int:
    """Torch intra-op threads for each of ``workers`` processes sharing ``cores`` CPU cores.

    Returns ``max(1, cores // workers)`` so that workers x threads never exceeds the cores, and 1 when
    ``model_params`` (the model's parameter count, None = unknown) is at most ``SMALL_MODEL_PARAMS``,
    where a second thread was measured not to help.
    """
    if workers < 1 or cores < 1:
        raise ValueError(f"workers and cores must be at least 1, got workers={workers}, cores={cores}")
    if model_params is not None and model_params <= SMALL_MODEL_PARAMS:
        return 1
    return max(1, cores // workers)


def set_process_threads(threads: int, *, workers: int = 1) -> int:
    """Set this process's torch threads (a worker process of a pool of ``workers``, or the server); return it.

    ``train`` then treats ``threads`` as the process's own setting, not the user's, and picks threads by the
    rule for ``workers`` processes sharing the cores (never more than ``threads``).
    """
    global _baseline, _process_workers
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    _baseline, _process_workers = torch.get_num_threads(), max(1, int(workers))
    return _baseline


def user_threads() -> int | None:
    """Threads the user asked for, or None: ``$DPEXPLORER_THREADS``, else torch's count when someone changed it.

    Someone changed it when ``OMP_NUM_THREADS`` is set or ``torch.get_num_threads()`` differs from the
    value torch chose when this module was imported (a ``torch.set_num_threads`` call before ``train``) or
    the one ``set_process_threads`` set.
    A bad ``$DPEXPLORER_THREADS`` is ignored.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        with contextlib.suppress(ValueError):
            return max(1, int(raw))
    if os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads() != _baseline:
        return torch.get_num_threads()
    return None


@contextlib.contextmanager
def training_threads(*, threads: int | None = None, model_params: int | None = None,
                     workers: int | None = None) -> Iterator[int]:
    """Run the block with torch's thread count set by the rule; yield the count used; restore it afterwards.

    The count is ``threads`` when given, else what the user set (``user_threads``), else
    ``torch_threads_for(workers=workers, cores=available_cores(), model_params=model_params)`` with
    ``workers`` defaulting to the pool size given to ``set_process_threads`` (1 outside a worker).
    """
    chosen = threads if threads is not None else user_threads()
    if chosen is None:
        workers = _process_workers if workers is None else workers
        chosen = torch_threads_for(workers=workers, cores=available_cores(), model_params=model_params)
    previous = torch.get_num_threads()
    if chosen != previous:
        torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
