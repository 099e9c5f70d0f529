"""The run store: every run's config, status, progress and metrics, kept in one SQLite file.

What is stored (statuses, tables, ``RunRecord``) is in ``dpcore.store.schema``; the files of a
run (artifacts, uploads, the ROC) in ``dpcore.store.artifacts``, which the file methods here
delegate to; process ownership in ``dpcore.store.owners``; the typed view every reader uses in
``dpcore.store.records.StoredRun``.

``RunStore(root)`` keeps ``root/runs.sqlite3`` (WAL mode, safe for several threads and
processes), one artifacts folder per run (``root/artifacts/<run_id>/``) and
content-addressed copies of uploaded CSVs (``root/uploads/``). Runs survive restarts:
opening a store, and reading it (at most every few seconds), marks runs whose process is gone
(dead on this host, or a heartbeat older than 15 s: ``dpcore.store.heartbeat``) as ``interrupted``.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as root:
...     store = RunStore(root)
...     run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0))
...     store.set_progress(run_id, 5, 20)
...     record = store.get(run_id)
...     store.close()
>>> (record.status, record.name, record.progress)
('queued', 'synthetic mlp, eps 3, C 0.3, seed 42', 0.25)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.store import artifacts
from dpcore.store.heartbeat import RunLiveness, host_name
from dpcore.store.owners import own_token, owner_alive, process_token
from dpcore.store.schema import (
    ACTIVE_STATUSES,
    CANCELLED,
    DB_NAME,
    DONE,
    EPOCH_COLUMNS,
    FAILED,
    INTERRUPTED,
    LIST_COLUMNS,
    QUEUED,
    RECORD_SQL,
    RUNNING,
    SCHEMA_VERSION,
    STATUSES,
    STEP_COLUMNS,
    TERMINAL_STATUSES,
    RunRecord,
    as_rows,
    dumps,
    migrate,
    record_from_row,
    row_values,
    utc_now,
)
from dpcore.store.write_errors import storage_problem

if TYPE_CHECKING:  # pandas is imported lazily: the CLI and store readers that need no frame stay light
    import pandas as pd

RUNS_DIR_ENV = "DPEXPLORER_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"

class RunNotFound(DPExplorerError, LookupError):
    """No run with the given id exists in this store (never created, or deleted)."""


class RunActive(DPExplorerError):
    """The operation needs a finished run, but the run is still queued or running."""


class StoreUnavailable(DPExplorerError, OSError):
    """The runs directory cannot be used: not a folder, not writable, or its database is unreadable."""


def _reason(err: BaseException) -> str:
    """What is wrong with a runs directory and what to do, for StoreUnavailable."""
    elsewhere = "point DPEXPLORER_RUNS_DIR (or --runs-dir) at a folder you can write to"
    if isinstance(err, sqlite3.DatabaseError):
        return (f"its database {DB_NAME} cannot be read ({err}). Move that file aside to start an empty store "
                f"there, or {elsewhere}.")
    if isinstance(err, FileExistsError):
        return f"{err.filename} is a file, not a folder; {elsewhere}."
    if isinstance(err, NotADirectoryError):
        return f"a part of {err.filename} is a file, not a folder; {elsewhere}."
    if isinstance(err, PermissionError):
        return f"no permission to write to {err.filename or 'it'}; {elsewhere}."
    return f"{err.strerror or err}; {elsewhere}." if isinstance(err, OSError) else f"{err}; {elsewhere}."


# ---------------------------------------------------------------------- helpers
def default_root() -> Path:
    """The runs directory: ``$DPEXPLORER_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def new_run_id() -> str:
    """A short id that sorts by creation second: 'YYYYMMDD-HHMMSS-' + 6 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def format_error(error: BaseException | str, *, root: str | os.PathLike[str] | None = None) -> str:
    """Text stored for a failed run: a DPExplorerError's message, a refused write's line, else message and traceback."""
    if isinstance(error, str):
        return error
    problem = str(error) if isinstance(error, DPExplorerError) else storage_problem(error, root=root)
    if problem is not None:
        return problem
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return f"{type(error).__name__}: {error}\n\n{trace}"


# ---------------------------------------------------------------------- store
class RunStore(RunLiveness):
    """Runs, their metrics and artifacts under one directory.

    ``root`` defaults to ``$DPEXPLORER_RUNS_DIR`` or ``./runs``. Every thread gets its own
    SQLite connection; every write is one short ``BEGIN IMMEDIATE`` transaction, so
    threads and processes sharing the directory never see half-written runs.
    Opening a store marks queued/running runs whose process is gone as ``interrupted``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 30.0) -> None:
        self.root = Path(root if root is not None else default_root()).expanduser().resolve()
        self.db_path = self.root / DB_NAME
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._next_reap = 0.0  # monotonic time of the next reader-triggered recover()
        self._unrecorded: dict[str, str] = {}  # run id -> failure text whose write failed (retried later)
        self._retrying: threading.Thread | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            artifacts.check_writable(self.root, self.db_path)  # a permission problem, not "a damaged database"
            (self.root / "artifacts").mkdir(exist_ok=True)
            self._init_schema()
        except (OSError, sqlite3.DatabaseError) as err:
            raise StoreUnavailable(f"cannot use {self.root} as the runs directory: {_reason(err)}") from err
        self.recovered: list[str] = self.recover()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # ------------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # never reuse across fork
            conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front so the busy timeout applies."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _init_schema(self) -> None:
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        with self._write() as conn:
            migrate(conn, self.db_path)

    # ------------------------------------------------------------------ lifecycle
    def create_run(self, config: TrainConfig | Mapping[str, Any], *, kind: str = "train",
                   name: str | None = None, group: str | None = None) -> str:
        """Record a new run with status 'queued', owned by this process; return its id.

        ``config`` is a TrainConfig (stored as ``to_dict()``) or any JSON-ready mapping
        (other job kinds). ``name`` defaults to the config's label; ``group`` ties
        sweep members together.
        """
        if isinstance(config, TrainConfig):
            config_dict = config.to_dict()
        elif isinstance(config, Mapping):
            config_dict = dict(config)
        else:
            raise TypeError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r}")
        if name is None:
            name = _default_name(config_dict, kind)
        config_json = dumps(config_dict)
        for _ in range(5):
            run_id = new_run_id()
            try:
                with self._write() as conn:
                    conn.execute(
                        "INSERT INTO runs (id, name, kind, group_id, config, status, created, pid, owner_token, "
                        "host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, name, kind, group, config_json, QUEUED, utc_now(), os.getpid(), own_token(),
                         host_name()),
                    )
                return run_id
            except sqlite3.IntegrityError:  # same second and same random suffix: draw again
                continue
        raise RuntimeError("could not allocate a unique run id")

    def get(self, run_id: str) -> RunRecord:
        """The run's record; RunNotFound for an unknown id."""
        self._reap()
        row = self._conn().execute(f"{RECORD_SQL} WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._not_found(run_id)
        return record_from_row(row)

    def exists(self, run_id: str) -> bool:
        """Whether a run with this id is stored."""
        return self._conn().execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def records(self, *, kind: str | None = None, group: str | None = None,
                status: str | Iterable[str] | None = None) -> list[RunRecord]:
        """Matching runs as RunRecords, newest first."""
        self._reap()
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if group is not None:
            where.append("group_id = ?")
            params.append(group)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        sql = RECORD_SQL + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created DESC, rowid DESC"
        return [record_from_row(row) for row in self._conn().execute(sql, params).fetchall()]

    def list_runs(self, *, kind: str | None = None, group: str | None = None,
                  status: str | Iterable[str] | None = None) -> pd.DataFrame:
        """One row per run, newest first, with config and summary fields flattened into columns.

        Always has the columns in ``LIST_COLUMNS`` (dataset, mode, target_epsilon,
        final_epsilon, test_accuracy, mia_auc, status, created, ...); scalar summary
        fields beyond those are appended. Summary values win over config values of
        the same name (e.g. the calibrated ``noise_multiplier``); ``error`` is its first line.
        """
        import pandas as pd  # deferred: pandas is heavy and the CLI and workers need no frames

        rows = []
        for rec in self.records(kind=kind, group=group, status=status):
            row: dict[str, Any] = {key: rec.config.get(key) for key in LIST_COLUMNS if key in rec.config}
            row["mode"] = _mode(rec.config)
            for key, value in rec.summary.items():
                if value is None or isinstance(value, (str, bool, int, float)):
                    row[key] = value
            row.update(
                id=rec.id, name=rec.name, kind=rec.kind, group=rec.group, status=rec.status,
                stop_status=rec.stop_status, created=rec.created, started=rec.started, finished=rec.finished,
                steps_done=rec.steps_done, total_steps=rec.total_steps, device=rec.device or row.get("device"),
                error=rec.error_message,
            )
            rows.append(row)
        frame = pd.DataFrame(rows)
        extra = [col for col in frame.columns if col not in LIST_COLUMNS]
        return frame.reindex(columns=[*LIST_COLUMNS, *extra])

    # ------------------------------------------------------------------ status and progress
    def set_status(self, run_id: str, status: str, *, only_from: Iterable[str] | None = None,
                   stop_status: str | None = None, stop_reason: str | None = None) -> bool:
        """Move the run to ``status``; return False (and change nothing) when its status is not in ``only_from``.

        'running' records the start time and makes this process the owner; terminal
        statuses record the finish time. RunNotFound for an unknown id.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        sets, params = ["status = ?"], [status]
        if status == RUNNING:
            sets += ["started = ?", "pid = ?", "owner_token = ?", "host = ?"]
            params += [utc_now(), os.getpid(), own_token(), host_name()]
        if status in TERMINAL_STATUSES:
            sets.append("finished = ?")
            params.append(utc_now())
        if stop_status is not None:
            sets.append("stop_status = ?")
            params.append(stop_status)
        if stop_reason is not None:
            sets.append("stop_reason = ?")
            params.append(stop_reason)
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        params.append(run_id)
        if only_from is not None:
            allowed = list(only_from)
            sql += f" AND status IN ({', '.join('?' * len(allowed))})"
            params += allowed
        with self._write() as conn:
            changed = conn.execute(sql, params).rowcount > 0
            if not changed and not self._exists_in(conn, run_id):
                raise self._not_found(run_id)
        return changed

    def set_progress(self, run_id: str, steps_done: int, total_steps: int | None = None) -> None:
        """Record optimizer steps done (and the planned total, when known)."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET steps_done = ?, total_steps = COALESCE(?, total_steps) WHERE id = ?",
                (int(steps_done), None if total_steps is None else int(total_steps), run_id),
            )
            if not cur.rowcount:
                raise self._not_found(run_id)

    def request_cancel(self, run_id: str) -> str:
        """Ask the run to stop; return its status afterwards.

        A queued run becomes 'cancelled' at once (it will never start); a running run
        gets its cancel flag set and stops at its next ``should_stop`` poll, from any
        thread or process; finished runs are left as they are (a run whose process is gone is
        marked 'interrupted' first).
        """
        self._reap(force=True)
        with self._write() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._not_found(run_id)
            status = row[0]
            if status == QUEUED:
                conn.execute(
                    "UPDATE runs SET status = ?, stop_status = ?, stop_reason = ?, finished = ?, "
                    "cancel_requested = 1 WHERE id = ?",
                    (CANCELLED, CANCELLED, "cancelled before it started", utc_now(), run_id),
                )
                return CANCELLED
            if status == RUNNING:
                conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
            return status

    def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel was requested for this run (RunNotFound for an unknown id)."""
        row = self._conn().execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._not_found(run_id)
        return bool(row[0])

    def finished_stamp(self) -> tuple[int, str | None]:
        """(number of finished runs, latest ``finished`` time): changes whenever a run finishes or one is deleted.

        One cheap query, for caches of results that depend on the set of finished runs (``find_baseline``).
        """
        row = self._conn().execute("SELECT count(*), max(finished) FROM runs WHERE status = ?", (DONE,)).fetchone()
        return int(row[0]), row[1]

    def update_summary(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the run's summary (e.g. ``mia_auc=0.52``); return the new summary."""
        with self._write() as conn:
            row = conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._not_found(run_id)
            summary = json.loads(row[0] or "{}")
            summary.update(fields)
            conn.execute("UPDATE runs SET summary = ? WHERE id = ?", (dumps(summary), run_id))
        return summary

    # ------------------------------------------------------------------ metrics
    def append_steps(self, run_id: str, rows: Any) -> int:
        """Write per-step metric rows (mappings or a DataFrame with STEP_COLUMNS) in one transaction.

        A row for a step already stored replaces it. Returns the number of rows written.
        NaN is stored as missing; infinite epsilon (no-DP baseline) is kept.
        """
        values = [row_values(run_id, row, STEP_COLUMNS) for row in as_rows(rows)]
        return self._insert("steps", STEP_COLUMNS, run_id, values)

    def append_epoch(self, run_id: str, row: Any) -> int:
        """Write per-epoch metric row(s) (mapping, mappings or DataFrame with EPOCH_COLUMNS); return rows written."""
        values = [row_values(run_id, item, EPOCH_COLUMNS) for item in as_rows(row)]
        return self._insert("epochs", EPOCH_COLUMNS, run_id, values)

    def _insert(self, table: str, columns: tuple[str, ...], run_id: str, values: list[tuple[Any, ...]]) -> int:
        if not values:
            return 0
        placeholders = ", ".join("?" * (len(columns) + 1))
        try:
            with self._write() as conn:
                conn.executemany(
                    f"INSERT OR REPLACE INTO {table} (run_id, {', '.join(columns)}) VALUES ({placeholders})", values
                )
        except sqlite3.IntegrityError as exc:  # foreign key: the run does not exist
            raise self._not_found(run_id) from exc
        return len(values)

    def steps(self, run_id: str, *, after_step: int | None = None) -> pd.DataFrame:
        """Per-step metrics ordered by step: STEP_COLUMNS (epsilon in the run's delta; NaN when missing).

        ``after_step=k`` returns only the rows with step > k (a live view reads just what is new)."""
        return self._metrics("steps", STEP_COLUMNS, "step", run_id, after=after_step)

    def epochs(self, run_id: str) -> pd.DataFrame:
        """Per-epoch metrics ordered by epoch: EPOCH_COLUMNS (accuracies in [0, 1])."""
        return self._metrics("epochs", EPOCH_COLUMNS, "epoch", run_id)

    def _metrics(self, table: str, columns: tuple[str, ...], order: str, run_id: str,
                 after: int | None = None) -> pd.DataFrame:
        import pandas as pd  # deferred: pandas is heavy and the CLI and workers need no frames

        conn, where = self._conn(), "" if after is None else f" AND {order} > {int(after)}"
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE run_id = ?{where} ORDER BY {order}", (run_id,)
        ).fetchall()
        if not rows and not self._exists_in(conn, run_id):
            raise self._not_found(run_id)
        frame = pd.DataFrame(rows, columns=list(columns))
        for col in columns:
            if col in (order, "epoch") and frame[col].notna().all():
                frame[col] = frame[col].astype("int64")
            else:
                frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        return frame

    # ------------------------------------------------------------------ results
    def finish(self, run_id: str, result: Any) -> RunRecord:
        """Store a trainer's RunResult: artifacts, final metrics, summary, stop status; return the record.

        Status becomes 'cancelled' when the trainer stopped on a cancel, else 'done'
        (``stop_status`` keeps the trainer's finer status: finished, epsilon_limit,
        diverged, cancelled). Artifacts go to ``artifacts_dir(run_id)`` via ``result.save``.
        """
        if not self.exists(run_id):
            raise self._not_found(run_id)
        artifacts.save_result(self.root, run_id, result)
        history = getattr(result, "history", None)
        epochs = getattr(result, "epochs", None)
        step_values = [] if history is None else [row_values(run_id, r, STEP_COLUMNS) for r in as_rows(history)]
        epoch_values = [] if epochs is None else [row_values(run_id, r, EPOCH_COLUMNS) for r in as_rows(epochs)]
        summary = dict(result.summary()) if hasattr(result, "summary") else {}
        stop_status = getattr(result, "status", None) or "finished"
        status = CANCELLED if stop_status == CANCELLED else DONE
        steps_done = getattr(result, "steps", None)
        if steps_done is None:
            steps_done = len(step_values)
        config = getattr(result, "config", None)
        with self._write() as conn:
            row = conn.execute("SELECT summary, config FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:  # deleted while it ran: do not leave orphan artifacts behind
                artifacts.remove_artifacts(self.root, run_id)
                raise self._not_found(run_id)
            merged = json.loads(row[0] or "{}")
            merged.update(summary)
            config_json = dumps(config.to_dict()) if hasattr(config, "to_dict") else row[1]
            if step_values:
                conn.executemany(
                    f"INSERT OR REPLACE INTO steps (run_id, {', '.join(STEP_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    step_values,
                )
            if epoch_values:
                conn.executemany(
                    f"INSERT OR REPLACE INTO epochs (run_id, {', '.join(EPOCH_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (len(EPOCH_COLUMNS) + 1))})",
                    epoch_values,
                )
            conn.execute(
                "UPDATE runs SET status = ?, stop_status = ?, stop_reason = ?, finished = ?, device = ?, "
                "steps_done = ?, summary = ?, config = ?, error = NULL WHERE id = ?",
                (status, stop_status, getattr(result, "stop_reason", None), utc_now(),
                 getattr(result, "device", None), int(steps_done), dumps(merged), config_json, run_id),
            )
        return self.get(run_id)

    def fail(self, run_id: str, error: BaseException | str) -> None:
        """Mark the run 'failed' with ``error``: a DPExplorerError's message, else message and traceback."""
        text = format_error(error, root=self.root)
        try:
            with self._write() as conn:
                cur = conn.execute(
                    "UPDATE runs SET status = ?, stop_status = ?, stop_reason = ?, error = ?, finished = ? "
                    "WHERE id = ?",
                    (FAILED, FAILED, text.splitlines()[0] if text else "failed", text, utc_now(), run_id),
                )
                if not cur.rowcount:
                    raise self._not_found(run_id)
        except (sqlite3.OperationalError, OSError):  # a full disk: written by a later read or the retry thread
            self._defer_failure(run_id, text)
            raise
        self._unrecorded.pop(run_id, None)


    # ------------------------------------------------------------------ files (dpcore.store.artifacts)
    def artifacts_path(self, run_id: str) -> Path:
        """``root/artifacts/<run_id>`` without checking that the run exists (may not exist yet)."""
        try:
            return artifacts.artifacts_path(self.root, run_id)
        except ValueError:
            raise self._not_found(run_id) from None

    def artifacts_dir(self, run_id: str, *, create: bool = False) -> Path:
        """The run's artifacts folder (model.pt, checkpoint.pt, history.csv, epochs.csv, summary.json, ...)."""
        if not self.exists(run_id):
            raise self._not_found(run_id)
        path = self.artifacts_path(run_id)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def load_weights(self, run_id: str, filename: str = artifacts.MODEL_FILE) -> dict[str, Any]:
        """The saved state dict of a finished run, loaded with ``torch.load(weights_only=True)``."""
        state = artifacts.load_weights(self.artifacts_dir(run_id), filename)
        if state is None:
            raise DPExplorerError(
                f"run {run_id} has no {artifacts.safe_filename(filename)} (status {self.get(run_id).status}); "
                "only runs that finished or were cancelled after training started save weights"
            )
        return state

    def save_upload(self, data: bytes, filename: str) -> Path:
        """Keep an uploaded file under ``root/uploads/<sha256[:16]>/<filename>``; return its path
        (``dpcore.store.artifacts.save_upload``: the same bytes under the same name give the same path)."""
        return artifacts.save_upload(self.root, data, filename)

    # ------------------------------------------------------------------ deletion
    def delete(self, run_id: str, *, force: bool = False) -> list[str]:
        """Delete the run, its metrics and its artifacts; return the ids deleted.

        Jobs of other kinds filed under the run (``group`` = its id and ``kind`` other than
        'train', e.g. attack evaluations of it) go with it: they mean nothing without it.
        Continuations (training runs in its group) stay; they hold their own history.
        A queued or running run, or such a job, raises RunActive unless ``force`` (a run whose
        process is gone is marked 'interrupted' first, so it can be deleted).
        """
        self._reap(force=True)
        with self._write() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._not_found(run_id)
            if row[0] in ACTIVE_STATUSES and not force:
                raise RunActive(f"run {run_id} is {row[0]}; cancel it and wait until it stops before deleting it")
            jobs = conn.execute("SELECT id, kind, status FROM runs WHERE group_id = ? AND kind != 'train' AND id != ?",
                                (run_id, run_id)).fetchall()
            busy = [(job_id, kind, status) for job_id, kind, status in jobs if status in ACTIVE_STATUSES]
            if busy and not force:
                job_id, kind, status = busy[0]
                raise RunActive(f"the {kind} job {job_id} on run {run_id} is {status}; cancel it and wait until "
                                "it stops before deleting the run")
            deleted = [run_id, *(job_id for job_id, _, _ in jobs)]
            conn.executemany("DELETE FROM runs WHERE id = ?", [(job_id,) for job_id in deleted])  # metrics cascade
        for job_id in deleted:
            artifacts.remove_artifacts(self.root, job_id)
        return deleted

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _exists_in(conn: sqlite3.Connection, run_id: str) -> bool:
        return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _not_found(self, run_id: Any) -> RunNotFound:
        return RunNotFound(
            f"no run with id {run_id!r} in {self.root}; it was never created there or has been deleted "
            "(list the stored runs with RunStore.list_runs())"
        )


def _mode(config: Mapping[str, Any]) -> str | None:
    try:
        return TrainConfig.from_dict(dict(config)).mode
    except Exception:  # other job kinds store other configs
        return None


def _default_name(config: Mapping[str, Any], kind: str) -> str:
    try:
        label = TrainConfig.from_dict(dict(config)).label()
    except Exception:  # other job kinds store other configs; a label is cosmetic
        return kind
    return label if kind == "train" else f"{kind}: {label}"


# Names defined in dpcore.store.schema / owners are re-exported: callers import them from here.
__all__ = [
    "ACTIVE_STATUSES", "CANCELLED", "DB_NAME", "DEFAULT_RUNS_DIR", "DONE", "EPOCH_COLUMNS", "FAILED", "INTERRUPTED",
    "LIST_COLUMNS", "QUEUED", "RUNNING", "RUNS_DIR_ENV", "SCHEMA_VERSION", "STATUSES", "STEP_COLUMNS",
    "TERMINAL_STATUSES", "RunActive", "RunNotFound", "RunRecord", "RunStore", "StoreUnavailable", "default_root",
    "format_error", "new_run_id", "own_token", "owner_alive", "process_token", "utc_now",
]
