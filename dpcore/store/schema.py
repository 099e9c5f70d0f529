"""What the run store keeps: statuses, the SQLite tables, metric columns and ``RunRecord`` (one run as plain data).

``migrate(conn)`` creates or upgrades the tables inside a write transaction; ``record_from_row``
turns a row of ``RECORD_SQL`` into a ``RunRecord``; ``row_values`` turns a metrics row into
SQLite values (NaN stored as missing, infinite ε kept).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError

DB_NAME = "runs.sqlite3"
SCHEMA_VERSION = 1

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
ACTIVE_STATUSES = (QUEUED, RUNNING)
TERMINAL_STATUSES = (DONE, FAILED, CANCELLED, INTERRUPTED)

STEP_COLUMNS = ("step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size")
EPOCH_COLUMNS = ("epoch", "epsilon", "train_loss", "train_accuracy", "test_accuracy", "validation_accuracy",
                 "mia_auc", "mia_tpr_at_1pct_fpr")
#: Columns added to a table after the first schema, with their SQL type: added in place when missing
#: (older readers name their columns, so they keep working; runs stored before read NaN there).
ADDED_COLUMNS = {"epochs": {"validation_accuracy": "REAL", "mia_auc": "REAL", "mia_tpr_at_1pct_fpr": "REAL"},
                 # the heartbeat (UNIX seconds) and host of the process running a run (dpcore.store.heartbeat)
                 "runs": {"heartbeat": "REAL", "host": "TEXT"}}
INT_COLUMNS = {"step", "epoch", "batch_size"}

# Columns every list_runs() frame has, even when no run has a value for them.
LIST_COLUMNS = (
    "id", "name", "kind", "group", "status", "stop_status", "created", "started", "finished",
    "steps_done", "total_steps", "device", "dataset", "model", "mode", "private", "target_epsilon",
    "noise_multiplier", "target_delta", "max_grad_norm", "epochs", "batch_size", "seed",
    "final_epsilon", "test_accuracy", "train_accuracy", "mia_auc", "error",
    # Config fields dpcore.privacy.caveats needs (a missing "reproducible" means a run stored before secret noise).
    "accountant", "poisson_sampling", "reproducible",
)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'train',
    group_id TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    stop_status TEXT,
    stop_reason TEXT,
    error TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    device TEXT,
    pid INTEGER,
    owner_token TEXT,
    steps_done INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER,
    summary TEXT NOT NULL DEFAULT '{}',
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_group ON runs(group_id);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER,
    epsilon REAL,
    clip_fraction REAL,
    loss REAL,
    batch_size INTEGER,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    epsilon REAL,
    train_loss REAL,
    train_accuracy REAL,
    test_accuracy REAL,
    validation_accuracy REAL,
    mia_auc REAL,
    mia_tpr_at_1pct_fpr REAL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
"""


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def sql_number(value: Any, *, integer: bool = False) -> int | float | None:
    """Plain int/float for SQLite; None for missing values and NaN (infinities are kept)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    value = float(value)
    if math.isnan(value):
        return None
    if integer and not math.isinf(value):
        return int(value)
    return value


def row_values(run_id: str, row: Mapping[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    key = columns[0]
    if row.get(key) is None:
        raise ValueError(f"metrics row needs a '{key}' value, got {dict(row)!r}")
    return (run_id, *(sql_number(row.get(col), integer=col in INT_COLUMNS) for col in columns))


def as_rows(rows: Any) -> list[Mapping[str, Any]]:
    """Accept a DataFrame, one mapping, or an iterable of mappings."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        return rows.to_dict("records")
    if isinstance(rows, Mapping):
        return [rows]
    return list(rows)


def utc_now() -> str:
    """Current UTC time as ISO 8601 with milliseconds, e.g. '2025-11-25T07:55:12.123+00:00'."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------- record
@dataclass
class RunRecord:
    """One run as plain data. Timestamps are UTC ISO strings; ``config``/``summary`` are dicts."""

    id: str
    name: str
    kind: str
    group: str | None
    status: str
    config: dict[str, Any]
    stop_status: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    created: str = ""
    started: str | None = None
    finished: str | None = None
    device: str | None = None
    pid: int | None = None
    steps_done: int = 0
    total_steps: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.status in ACTIVE_STATUSES

    @property
    def progress(self) -> float | None:
        """Fraction of steps done in [0, 1], or None before the total is known."""
        if not self.total_steps:
            return None
        return min(1.0, self.steps_done / self.total_steps)

    @property
    def error_message(self) -> str | None:
        """First line of ``error`` (the part to show a person; the rest is the traceback)."""
        return self.error.splitlines()[0] if self.error else None

    def train_config(self) -> TrainConfig:
        """The stored config as a ``TrainConfig`` (ConfigError when this run's config is not one)."""
        return TrainConfig.from_dict(self.config)


RECORD_SQL = (
    "SELECT id, name, kind, group_id, status, config, stop_status, stop_reason, error, created, started, "
    "finished, device, pid, steps_done, total_steps, summary, cancel_requested FROM runs"
)


def record_from_row(row: tuple[Any, ...]) -> RunRecord:
    (run_id, name, kind, group, status, config, stop_status, stop_reason, error, created, started,
     finished, device, pid, steps_done, total_steps, summary, cancel_requested) = row
    return RunRecord(
        id=run_id, name=name, kind=kind, group=group, status=status, config=json.loads(config),
        stop_status=stop_status, stop_reason=stop_reason, error=error, created=created, started=started,
        finished=finished, device=device, pid=pid, steps_done=steps_done or 0, total_steps=total_steps,
        summary=json.loads(summary or "{}"), cancel_requested=bool(cancel_requested),
    )



def migrate(conn: sqlite3.Connection, db_path: object) -> None:
    """Create missing tables, indexes and added columns; call inside a write transaction.

    Raises DPExplorerError for a database written by a newer version (``db_path`` names it).
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DPExplorerError(
            f"runs database {db_path} has schema version {version}, newer than this "
            f"DP Explorer understands ({SCHEMA_VERSION}); upgrade DP Explorer or use another runs directory"
        )
    for statement in SCHEMA_SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
    for table, added in ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column, sql_type in added.items():
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
