"""The epoch table's attack columns (mia_auc, mia_tpr_at_1pct_fpr): written, read back, NaN for old runs."""

from __future__ import annotations

import sqlite3

from dpcore.config import TrainConfig
from dpcore.engine.membership import MIA_COLUMNS
from dpcore.store.records import StoredRun
from dpcore.store.runs import DB_NAME, EPOCH_COLUMNS, RunStore

PRIVATE = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=3, device="cpu")


def test_rows_without_the_columns_and_an_old_database_read_nan(tmp_path):
    root = tmp_path / "old-runs"
    store = RunStore(root)
    run_id = store.create_run(PRIVATE)
    store.append_epoch(run_id, {"epoch": 1, "epsilon": 1.0, "test_accuracy": 0.7})  # a writer that knows no attack
    store.close()
    connection = sqlite3.connect(root / DB_NAME)  # a runs folder from before the columns
    for column in MIA_COLUMNS:
        connection.execute(f"ALTER TABLE epochs DROP COLUMN {column}")
    connection.commit()
    connection.close()

    store = RunStore(root)  # adds the columns in place
    epochs = StoredRun.load(store, run_id).epochs_frame()
    assert set(MIA_COLUMNS) <= set(epochs.columns) and epochs[list(MIA_COLUMNS)].isna().all().all()
    assert store.append_epoch(run_id, {"epoch": 2, "epsilon": 1.5, "test_accuracy": 0.72, "mia_auc": 0.55,
                                       "mia_tpr_at_1pct_fpr": 0.02}) == 1
    second = store.epochs(run_id).iloc[1]
    assert second["mia_auc"] == 0.55 and second["mia_tpr_at_1pct_fpr"] == 0.02
    assert set(MIA_COLUMNS) <= set(EPOCH_COLUMNS)
    store.close()
