"""What a live run view reads and draws, kept cheap so that watching a run costs the run nothing.

- ``REDRAW_S``: how often the live view redraws (seconds; the page's fragment interval).
- ``downsample_history(frame, max_points=...)``: at most ``max_points`` rows of a per-step history for the
  charts, keeping the first and last step and the last step of every epoch.
- ``StepCache`` / ``live_metrics``: a cache of the steps read so far, so each redraw reads only
  the rows written since the last one (``RunStore.steps(run_id, after_step=k)``); ``SHARED_STEPS`` is the
  process-wide one every session uses, so twenty watchers of one run read its new rows once, not twenty times.
- ``SharedCache`` / ``FIGURES``: a thread-safe, process-wide LRU (optionally with a time to live) that builds each
  value once for all sessions; the live charts are kept in ``FIGURES`` by (run id, last step, chart inputs).
- ``redraw_interval(session_id)``: the live redraw interval, ``REDRAW_S`` for a single watcher and backed off up to
  ``MAX_REDRAW_S`` when many sessions are watching at once.

Pure (no streamlit): the page puts ``SHARED_STEPS`` in its session state.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

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
#: Slowest redraw (seconds) when many sessions watch at once; ``WATCHERS_PER_STEP`` more watchers add 0.5 s.
MAX_REDRAW_S = 5.0
WATCHERS_PER_STEP = 2
#: Seconds a session counts as watching after its last redraw.
WATCHER_WINDOW_S = 15.0


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
        self._lock = threading.Lock()

    def steps(self, store: RunStore, run_id: str) -> pd.DataFrame:
        """The run's per-step history (``RunStore.steps`` columns), reading only the rows not cached yet.

        Thread-safe: the cache may be shared by every session of the server.
        """
        with self._lock:
            return self._steps(store, run_id)

    def _steps(self, store: RunStore, run_id: str) -> pd.DataFrame:
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
        with self._lock:
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


class SharedCache:
    """A thread-safe LRU of at most ``max_items`` values, each built once for every caller (process-wide).

    ``get(key, build)`` returns the cached value for ``key`` or stores and returns ``build()``; with
    ``ttl_s`` a value older than that many seconds is built again. ``builds`` counts the calls of ``build``.
    Values are shared, so callers must not modify them.
    """

    def __init__(self, *, max_items: int = 64, ttl_s: float | None = None) -> None:
        self.max_items, self.ttl_s, self.builds = max_items, ttl_s, 0
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value for ``key``: cached (and fresh within ``ttl_s``) or ``build()`` stored now."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (self.ttl_s is None or time.monotonic() - hit[0] < self.ttl_s):
                self._items.move_to_end(key)
                return hit[1]
            value = build()  # under the lock: concurrent callers wait for this build instead of repeating it
            self.builds += 1
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()


#: The steps read so far, shared by every session of the process.
SHARED_STEPS = StepCache(max_runs=32)
#: The live charts, built once per (run id, last step, chart inputs) for every session.
FIGURES = SharedCache(max_items=128)
_watchers: dict[str, float] = {}
_watchers_lock = threading.Lock()


def redraw_interval(session_id: str, *, now: float | None = None) -> float:
    """Seconds between live redraws for session ``session_id``, noting that it watches now.

    ``REDRAW_S`` while at most ``WATCHERS_PER_STEP`` sessions watched within ``WATCHER_WINDOW_S`` s; each further
    ``WATCHERS_PER_STEP`` watchers add 0.5 s, up to ``MAX_REDRAW_S``.
    """
    now = time.monotonic() if now is None else now
    with _watchers_lock:
        _watchers[session_id] = now
        for sid in [sid for sid, seen in _watchers.items() if now - seen > WATCHER_WINDOW_S]:
            del _watchers[sid]
        n = len(_watchers)
    return min(MAX_REDRAW_S, REDRAW_S + 0.5 * max(0, (n - 1) // WATCHERS_PER_STEP))


__all__ = ["CACHE_KEY", "FIGURES", "MAX_POINTS", "MAX_REDRAW_S", "REDRAW_S", "SHARED_STEPS", "SharedCache",
           "StepCache", "downsample_history", "live_metrics", "redraw_interval"]
