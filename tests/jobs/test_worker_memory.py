"""The worker memory cap: the setting, the limit a process gets, and the one-line reason for a job that runs out.

The end-to-end case (a real torch allocation refused in a worker, the next job trained in a fresh worker) is in
tests/jobs/test_workers.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from dpcore.errors import DPExplorerError
from dpcore.jobs import worker_memory as memory

CPU_REFUSAL = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)")


def test_the_setting_and_its_default(monkeypatch, caplog):
    monkeypatch.setattr(memory, "machine_memory_mb", lambda: 10_000)
    monkeypatch.delenv(memory.MEMORY_ENV, raising=False)
    assert memory.worker_memory_mb(workers=1) == 8_000  # 80 % of the machine, split among the workers
    assert memory.worker_memory_mb(workers=4) == 2_000
    assert memory.worker_memory_mb(workers=100) == memory.MIN_WORKER_MEMORY_MB
    monkeypatch.setenv(memory.MEMORY_ENV, "3000")
    assert memory.worker_memory_mb(workers=4) == 3000
    for no_cap in ("0", "none", "Unlimited"):
        monkeypatch.setenv(memory.MEMORY_ENV, no_cap)
        assert memory.worker_memory_mb(workers=1) is None
    with caplog.at_level(logging.WARNING):
        for bad in ("100", "lots", "1.5"):  # below the floor or not a whole number: the default, with a warning
            monkeypatch.setenv(memory.MEMORY_ENV, bad)
            assert memory.worker_memory_mb(workers=2) == 4_000
    assert caplog.text.count(memory.MEMORY_ENV) == 3
    monkeypatch.delenv(memory.MEMORY_ENV)
    monkeypatch.setattr(memory, "machine_memory_mb", lambda: None)
    assert memory.worker_memory_mb(workers=1) is None
    assert memory.describe_memory_cap(None) == "no memory cap"
    assert memory.describe_memory_cap(19284) == "up to 19,284 MB memory each"


def test_machine_memory_is_known_here():
    total = memory.machine_memory_mb()
    assert total is not None and 256 < total < 2**24


def test_the_cap_refuses_an_allocation_in_the_process_that_applies_it():
    # A fresh interpreter (no torch): cap its data memory 256 MB above what it holds, then ask for 512 MB.
    script = textwrap.dedent("""
        from dpcore.jobs import worker_memory as memory
        assert memory.apply_memory_cap(memory.data_memory_mb() + 256)
        small = bytearray(64 * 2**20)  # under the cap: fine
        try:
            bytearray(512 * 2**20)
        except MemoryError as err:
            assert memory.is_out_of_memory(err)
            print("refused")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"
    assert memory.apply_memory_cap(None) is False


def test_allocation_failures_are_recognised():
    assert memory.is_out_of_memory(MemoryError())
    assert memory.is_out_of_memory(CPU_REFUSAL)
    assert memory.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert memory.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    try:
        try:
            raise MemoryError()
        except MemoryError as err:
            raise DPExplorerError("training failed") from err
    except DPExplorerError as wrapped:
        assert memory.is_out_of_memory(wrapped)
    assert not memory.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not memory.is_out_of_memory(ValueError("out of memory is not a ValueError"))


def test_the_reason_is_one_line_that_says_what_to_do(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory_mb", lambda: 24_105)
    capped = memory.out_of_memory_message(CPU_REFUSAL, memory_mb=1024)
    assert capped == ("out of memory: the job needed more than the worker's memory cap of 1,024 MB (it asked for "
                      "2,048 MB at once) — what to do: use a smaller batch size (or set physical_batch_size) or a "
                      "smaller model, or raise DPEXPLORER_WORKER_MEMORY_MB (this machine has 24,105 MB)")
    uncapped = memory.out_of_memory_message(MemoryError(), memory_mb=None)
    assert uncapped.startswith("out of memory: the job needed more memory than this machine could give it — ")
    gpu = memory.out_of_memory_message(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. "
                                                                    "GPU 0 has a total capacity of 79 GiB"),
                                       memory_mb=1024)
    assert gpu.startswith("out of GPU memory:") and "(it asked for 2.00 GiB at once)" in gpu
    assert "DPEXPLORER_WORKER_MEMORY_MB" not in gpu  # the cap is not what stopped it
    for text in (capped, uncapped, gpu):
        assert "\n" not in text and "Traceback" not in text


@pytest.mark.parametrize("workers", [1, 3])
def test_the_pool_gives_each_worker_the_cap_of_the_setting(monkeypatch, workers):
    from dpcore.jobs import workers as workers_lib

    spawned: list[dict] = []

    class FakeWorker:
        def __init__(self, **kwargs):
            spawned.append(kwargs)
            self.threads, self.workers, self.memory_mb = kwargs["threads"], kwargs["workers"], kwargs["memory_mb"]
            self.retired = self.closed = False

        def alive(self) -> bool:
            return not self.closed

        def close(self, **kwargs) -> None:
            self.closed = True

    monkeypatch.setattr(workers_lib, "WorkerProcess", FakeWorker)
    monkeypatch.setattr(memory, "machine_memory_mb", lambda: 12_000)
    monkeypatch.delenv(memory.MEMORY_ENV, raising=False)
    pool = workers_lib.WorkerPool(max_idle=4)
    first = pool.acquire(threads=1, workers=workers)
    assert first.memory_mb == 9_600 // workers
    pool.release(first)
    assert pool.acquire(threads=1, workers=workers) is first  # same setting: reused
    pool.release(first)
    monkeypatch.setenv(memory.MEMORY_ENV, "2000")
    second = pool.acquire(threads=1, workers=workers)  # the setting changed: a new worker with the new cap
    assert second is not first and second.memory_mb == 2000
    second.retired = True
    pool.release(second)  # ran out of memory: not kept; a fresh one with the same settings waits instead
    third = pool.acquire(threads=1, workers=workers)
    assert second.closed and third is not second and third.memory_mb == 2000 and len(spawned) == 3


def test_a_job_on_a_thread_that_runs_out_also_fails_with_one_line(store):
    from dpcore.jobs.queue import JobQueue

    def refused(run_id, store, should_stop):
        raise CPU_REFUSAL

    queue = JobQueue(store, executor="thread")
    try:
        record = queue.wait(queue.submit({"what": "big"}, kind="test", runner=refused), 30)
        after = queue.wait(queue.submit({"what": "after"}, kind="test", runner=lambda *args: None), 30)
    finally:
        assert queue.shutdown(timeout=10)
    assert record.status == "failed" and after.status == "done"
    assert record.error.startswith("out of memory: the job needed more memory than this machine could give it (it "
                                   "asked for 2,048 MB at once) — what to do:")
    assert "\n" not in record.error
