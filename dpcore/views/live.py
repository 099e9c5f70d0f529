"""What a live run view reads and draws, kept cheap so that watching a run costs the run nothing.

- ``REDRAW_S``: how often the live view redraws (seconds; the page's fragment interval).
- ``downsample_history(frame, max_points=...)``: at most ``max_points`` rows of a per-step history for the
  charts, keeping the first and last step and the last step of every epoch.
- ``StepCache`` / ``live_metrics``: a per-session cache of the steps read so far, so each redraw reads only
  the rows written since the last one (``RunStore.steps(run_id, after_step=k)``).

Pure (no streamlit): the page keeps one ``StepCache`` in its session state.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dpcore.errors import ConfigError, DPExplorerError
from dpcore.store.records import StoredRun

if TYPE_CHECKING:
    from dpcore.store.runs import RunStore

#: Seconds between two redraws of a live run view (and the sidebar's queue panel): 1-2 s.
REDRAW_S = 1.5
#: Points per trace the live charts draw at most.
MAX_POINTS = 300
#: Session-state key of the page's ``StepCache``.
CACHE_KEY = "live_step_cache"


def downsample_history(frame: pd.DataFrame, *, max_points: int = MAX_POINTS, epoch_column: str = "epoch"
                       ) -> pd.DataFrame:
    """At most ``max_points`` rows of ``frame`` (rows in step order), for a chart.

    Keeps the first and the last row and, where ``epoch_column`` is present, the last row of every
    epoch (the epoch boundaries; evenly thinned themselves only when there are more of them than
    ``max_points - 2``); the remaining budget goes to evenly spaced rows. Returns ``frame`` itself when
    it already fits, else a new frame with a fresh 0..n-1 index. Raises ConfigError when
    ``max_points < 2``.
    """
    if max_points < 2:
        raise ConfigError(f"max_points must be at least 2 (the first and last step), got {max_points}")
    n = len(frame)
    if n <= max_points:
        return frame
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    if epoch_column in frame.columns:
        epochs = frame[epoch_column].to_numpy()
        ends = np.flatnonzero(epochs[:-1] != epochs[1:])  # last row of each epoch but the final one
        ends = ends[~keep[ends]]
        if ends.size > max_points - 2:
            ends = ends[np.linspace(0, ends.size - 1, max_points - 2).round().astype(int)]
        keep[ends] = True
    spare = max_points - int(keep.sum())
    if spare > 0:
        free = np.flatnonzero(~keep)
        keep[free[np.linspace(0, free.size - 1, min(spare, free.size)).round().astype(int)]] = True
    return frame.iloc[np.flatnonzero(keep)].reset_index(drop=True)


class StepCache:
    """The per-step rows read so far for a few runs (the most recently used ``max_runs``).

    ``steps(store, run_id)`` reads the rows after the last cached step, appends them and returns the
    whole history, equal to ``store.steps(run_id)`` as long as steps are only appended (a live run).
    """

    def __init__(self, *, max_runs: int = 8) -> None:
        self.max_runs = max_runs
        self._frames: OrderedDict[str, pd.DataFrame] = OrderedDict()

    def steps(self, store: RunStore, run_id: str) -> pd.DataFrame:
        """The run's per-step history (``RunStore.steps`` columns), reading only the rows not cached yet."""
        cached = self._frames.pop(run_id, None)
        last = int(cached["step"].iloc[-1]) if cached is not None and not cached.empty else None
        new = store.steps(run_id, after_step=last)
        frame = new if cached is None or cached.empty else cached if new.empty else pd.concat(
            [cached, new], ignore_index=True)
        self._frames[run_id] = frame
        while len(self._frames) > self.max_runs:
            self._frames.popitem(last=False)
        return frame

    def forget(self, run_id: str) -> None:
        """Drop a run's cached rows (its next read is a full one)."""
        self._frames.pop(run_id, None)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._frames


def live_metrics(run: StoredRun, *, cache: StepCache) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A live run's (per-step, per-epoch) tables, the steps read incrementally through ``cache``.

    Empty frames when the run is gone (like ``dpcore.views.run_summary.metrics``).
    """
    if run.store is None:
        return pd.DataFrame(), pd.DataFrame()
    try:
        return cache.steps(run.store, run.id), run.epochs_frame()
    except DPExplorerError:
        cache.forget(run.id)
        return pd.DataFrame(), pd.DataFrame()


__all__ = ["CACHE_KEY", "MAX_POINTS", "REDRAW_S", "StepCache", "downsample_history", "live_metrics"]
