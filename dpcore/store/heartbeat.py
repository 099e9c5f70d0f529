"""Heartbeats of running jobs, and telling a run whose process is gone from one that is still working.

A running job keeps ``runs.heartbeat`` (UNIX seconds), ``pid``, ``owner_token`` and ``host`` fresh
with a ``Heartbeat`` (a small daemon thread per job, refreshed every ``HEARTBEAT_S`` seconds, also
during long phases without steps). ``RunStore`` readers call ``stale_reason`` on queued and running
runs at most every ``REAP_EVERY_S`` seconds and mark the ones it names 'interrupted', with its reason.

>>> reason = stale_reason(status="running", pid=1, token="x", host="elsewhere", heartbeat=100.0, now=130.0,
...                       this_host="here")
>>> reason.split(";")[0]
'its process (pid 1 on elsewhere) stopped while it was running, without recording an outcome (no heartbeat for 30 s)'
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from dpcore.store.owners import own_token, owner_alive
from dpcore.store.schema import ACTIVE_STATUSES, INTERRUPTED, RUNNING, utc_now

log = logging.getLogger(__name__)


class BeatingStore(Protocol):
    """What ``Heartbeat`` needs of a ``RunStore`` (typed here so this module never imports runs.py,
    which builds ``RunStore`` on top of ``RunLiveness``)."""

    def beat(self, run_id: str) -> object: ...

    def close(self) -> None: ...

HEARTBEAT_S = 3.0  # a running job refreshes its heartbeat this often (seconds)
STALE_S = 15.0  # a running run whose heartbeat is older than this (seconds) has lost its process
REAP_EVERY_S = 2.0  # readers look for runs whose process is gone at most this often (seconds)

_host: str | None = None


def host_name() -> str:
    """This machine's host name (as stored in ``runs.host``)."""
    global _host
    if _host is None:
        try:
            _host = socket.gethostname() or "localhost"
        except OSError:
            _host = "localhost"
    return _host


def stale_reason(*, status: str, pid: int | None, token: str | None, host: str | None, heartbeat: float | None,
                 now: float, this_host: str, stale_s: float = STALE_S) -> str | None:
    """Why a queued/running run has lost its process, or None while it may still be working.

    Its process is gone when it ran on this host (``host`` None: a run stored before hosts were
    recorded) and ``owner_alive`` says no, or when its heartbeat (UNIX seconds; None: it never
    beat) is more than ``stale_s`` seconds old while it is 'running'.
    """
    where = f"pid {pid} on {host or this_host}"
    base = f"its process ({where}) stopped while it was {status}, without recording an outcome"
    advice = "; start it again to get a result"
    if (host is None or host == this_host) and not owner_alive(pid, token):
        return base + advice
    if status == "running" and heartbeat is not None and now - heartbeat > stale_s:
        return f"{base} (no heartbeat for {now - heartbeat:.0f} s){advice}"
    return None


class RunLiveness:
    """The part of ``RunStore`` that finds runs whose process is gone and keeps failures a full disk refused.

    Expects ``_conn()``, ``_write()``, ``fail()``, ``close()`` and the attributes ``_next_reap``,
    ``_unrecorded`` and ``_retrying`` (set by ``RunStore.__init__``).
    """

    _next_reap: float
    _unrecorded: dict[str, str]
    _retrying: threading.Thread | None

    if TYPE_CHECKING:
        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def fail(self, run_id: str, error: BaseException | str) -> None: ...
        def close(self) -> None: ...

    def recover(self, *, stale_s: float = STALE_S) -> list[str]:
        """Mark queued/running runs whose process is gone 'interrupted', with the reason; return their ids.

        Gone means ``stale_reason`` names a reason: its process on this host is dead, or its heartbeat
        is older than ``stale_s`` seconds. Failures whose write failed earlier (a full disk) are written
        first. Readers call this at most every ``REAP_EVERY_S`` seconds (``_reap``).
        """
        self._retry_unrecorded()
        rows = self._conn().execute(
            "SELECT id, pid, owner_token, status, host, heartbeat FROM runs WHERE status IN (?, ?)", ACTIVE_STATUSES
        ).fetchall()
        interrupted, now, this_host = [], time.time(), host_name()
        for run_id, pid, token, status, host, beat in rows:
            reason = None if run_id in self._unrecorded else stale_reason(
                status=status, pid=pid, token=token, host=host, heartbeat=beat, now=now, this_host=this_host,
                stale_s=stale_s)
            if reason is None:
                continue
            with self._write() as conn:
                cur = conn.execute(
                    "UPDATE runs SET status = ?, stop_status = ?, stop_reason = ?, finished = ? WHERE id = ? "
                    "AND status = ? AND pid IS ? AND owner_token IS ? AND heartbeat IS ?",
                    (INTERRUPTED, INTERRUPTED, reason, utc_now(), run_id, status, pid, token, beat),
                )
            if cur.rowcount:
                interrupted.append(run_id)
        return interrupted

    def _reap(self, *, force: bool = False) -> None:
        """``recover()`` for readers, at most every REAP_EVERY_S seconds (``force``: now); a store that
        cannot be written (a read-only folder, a locked or full database) is left as it is."""
        now = time.monotonic()
        if not force and now < self._next_reap:
            return
        self._next_reap = now + REAP_EVERY_S
        with contextlib.suppress(sqlite3.Error, OSError):
            self.recover()

    def beat(self, run_id: str) -> bool:
        """Refresh a running run's heartbeat (now, this process and host); False when the run is not running."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE runs SET heartbeat = ?, pid = ?, owner_token = ?, host = ? WHERE id = ? AND status = ?",
                (time.time(), os.getpid(), own_token(), host_name(), run_id, RUNNING),
            ).rowcount > 0

    def _defer_failure(self, run_id: str, text: str) -> None:
        """Keep a failure ``fail`` could not write (a full disk); a later read or a retry thread writes it."""
        self._unrecorded[run_id] = text
        if self._retrying is None or not self._retrying.is_alive():
            self._retrying = threading.Thread(target=self._retry_loop, name="dpexplorer-outcomes", daemon=True)
            self._retrying.start()

    def _retry_unrecorded(self) -> None:
        """Write the failures whose write failed earlier; stop at the first that fails again."""
        for run_id, text in list(self._unrecorded.items()):
            try:
                self.fail(run_id, text)
            except LookupError:  # RunNotFound: deleted meanwhile
                self._unrecorded.pop(run_id, None)
            except (sqlite3.OperationalError, OSError):
                return

    def _retry_loop(self) -> None:
        while self._unrecorded:
            time.sleep(REAP_EVERY_S)
            self._retry_unrecorded()
        self.close()


class Heartbeat:
    """Keeps run ``run_id``'s heartbeat fresh while a ``with`` block runs (``store.beat`` every ``interval_s`` s).

    Works the same in a worker thread, a worker process or the CLI: the heartbeat names the
    process that does the work. A failing beat (a full disk, a locked database) is logged and
    retried at the next interval; the job itself is never stopped by it.
    """

    def __init__(self, store: BeatingStore, run_id: str, *, interval_s: float = HEARTBEAT_S) -> None:
        self.store, self.run_id, self.interval_s = store, run_id, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        try:
            self.store.beat(self.run_id)
        except Exception as exc:  # never let bookkeeping break the job
            log.debug("run %s: heartbeat not written: %s", self.run_id, exc)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._beat()
        finally:
            self.store.close()  # this thread's connection

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.interval_s))


__all__ = ["HEARTBEAT_S", "REAP_EVERY_S", "STALE_S", "Heartbeat", "RunLiveness", "host_name", "stale_reason"]
