"""The memory cap of worker processes (``$DPEXPLORER_WORKER_MEMORY_MB``) and the message for a job that runs out.

A worker applies its cap at start with ``resource.setrlimit(RLIMIT_DATA)``: past it, an allocation fails in that
process only (Python ``MemoryError``, torch's "DefaultCPUAllocator: can't allocate memory") instead of the kernel's
OOM killer picking a process (possibly the server) once the whole machine is full. ``RLIMIT_DATA`` counts the
process's writable private memory (heap and anonymous mappings, Linux >= 4.7), not the address space: torch's and
CUDA's large read-only or ``PROT_NONE`` mappings do not count, so ``RLIMIT_AS`` problems do not arise. GPU memory is
not capped by it; a CUDA "out of memory" is reported the same way.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

MEMORY_ENV = "DPEXPLORER_WORKER_MEMORY_MB"
MB = 2**20  # the setting's unit: MiB
# Default: this share of the machine's memory, split among the workers. Each job then fails with a clear message
# before it can take memory the server, the other workers and the OS need; the kernel's OOM killer (which may pick
# the server) is left for memory the cap does not see. 0.8 leaves 20 % for the server process (~0.5 GB), the
# page cache and the OS; a training that needs more than 80 % of the machine has no safe place to run here anyway.
DEFAULT_MEMORY_SHARE = 0.8
# An idle worker (torch and Opacus imported) holds ~370 MB of data; the seed config trains at ~520 MB (measured
# with VmData in /proc/self/status). A smaller cap would fail every job, so it is refused as a typo.
MIN_WORKER_MEMORY_MB = 512
NO_CAP_WORDS = ("0", "none", "off", "unlimited")
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@functools.lru_cache(maxsize=1)
def machine_memory_mb() -> int | None:
    """Memory this process may use in MiB: the physical RAM, or the container's (cgroup) limit when smaller;
    None when the OS does not say. Read once per process (the sidebar asks on every page)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (total or 2**62):
            total = int(text)
    return total // MB if total > 0 else None


def worker_memory_mb(*, workers: int) -> int | None:
    """Memory cap in MiB of each of ``workers`` worker processes; None for no cap.

    ``$DPEXPLORER_WORKER_MEMORY_MB``: an integer >= MIN_WORKER_MEMORY_MB, or 0 / none / off / unlimited for no
    cap. Unset (or bad, with a warning): DEFAULT_MEMORY_SHARE of ``machine_memory_mb()`` divided by ``workers``
    (at least MIN_WORKER_MEMORY_MB), or no cap when the machine's memory is unknown.
    """
    raw = os.environ.get(MEMORY_ENV, "").strip().lower()
    if raw in NO_CAP_WORDS:
        return None
    if raw:
        try:
            if int(raw) >= MIN_WORKER_MEMORY_MB:
                return int(raw)
        except ValueError:
            pass
        log.warning("ignoring %s=%r: expected a whole number of MB >= %d, or 0 for no cap", MEMORY_ENV, raw,
                    MIN_WORKER_MEMORY_MB)
    total = machine_memory_mb()
    if total is None:
        return None
    return max(MIN_WORKER_MEMORY_MB, int(total * DEFAULT_MEMORY_SHARE) // max(1, workers))


def describe_memory_cap(memory_mb: int | None) -> str:
    """Sidebar text for a worker's cap, e.g. 'up to 19,284 MB memory each' or 'no memory cap'."""
    return "no memory cap" if memory_mb is None else f"up to {memory_mb:,} MB memory each"


def data_memory_mb() -> int | None:
    """This process's data memory in MiB as ``RLIMIT_DATA`` counts it (VmData); None where /proc has no answer."""
    try:
        found = re.search(r"^VmData:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) // 1024 if found else None


def apply_memory_cap(memory_mb: int | None) -> bool:
    """Limit this process's data memory to ``memory_mb`` MiB (the soft ``RLIMIT_DATA``; children inherit it).

    Returns whether a cap is now in force (False for None, or where the OS has no such limit). Call it once the
    process's own imports are done: the cap is then all the job can grow to.
    """
    if memory_mb is None:
        return False
    try:
        import resource  # deferred: POSIX only; a worker on another OS runs without a cap
    except ImportError:
        log.warning("%s is not supported on this OS; workers run without a memory cap", MEMORY_ENV)
        return False
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = memory_mb * MB if hard == resource.RLIM_INFINITY else min(memory_mb * MB, hard)
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ValueError, OSError) as err:
        log.warning("could not cap worker memory at %d MB: %s", memory_mb, err)
        return False
    used = data_memory_mb()
    if used is not None and used >= memory_mb:
        log.warning("this worker already holds %d MB, at or over its cap of %d MB (%s): every job will run out "
                    "of memory", used, memory_mb, MEMORY_ENV)
    return True


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is an allocation failure: ``MemoryError``, torch's
    CPU allocator refusing ("can't allocate memory"), or a CUDA / MPS "out of memory"."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
            return True
        if isinstance(error, RuntimeError):
            text = str(error)
            if "can't allocate memory" in text or "out of memory" in text.lower():
                return True
        error = error.__cause__ or error.__context__
    return False


def _attempted(text: str) -> str:
    """' (it asked for 2,048 MB at once)' from an allocator's message, else ''."""
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        return f" (it asked for {int(found.group(1)) / MB:,.0f} MB at once)"
    found = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]i?B)", text)
    return f" (it asked for {found.group(1)} at once)" if found else ""


def out_of_memory_message(error: BaseException, *, memory_mb: int | None) -> str:
    """The failed run's reason for an allocation failure ``error`` in a worker whose cap is ``memory_mb`` MiB
    (None: no cap): one line saying what happened and what to do, no traceback."""
    text = str(error)
    detail = _attempted(text)
    if "cuda" in text.lower() or type(error).__name__ == "OutOfMemoryError":
        return (f"out of GPU memory: the job needed more memory than the GPU had free{detail} — what to do: "
                "use a smaller batch size (or set physical_batch_size), a smaller model, or fewer workers per GPU "
                "(DPEXPLORER_WORKERS)")
    if memory_mb is None:
        where = "more memory than this machine could give it"
        raise_it = "free memory on this machine"
    else:
        where = f"more than the worker's memory cap of {memory_mb:,} MB"
        total = machine_memory_mb()
        raise_it = (f"raise {MEMORY_ENV} (this machine has {total:,} MB)" if total is not None
                    else f"raise {MEMORY_ENV}")
    return (f"out of memory: the job needed {where}{detail} — what to do: use a smaller batch size (or set "
            f"physical_batch_size) or a smaller model, or {raise_it}")
