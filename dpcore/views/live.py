"""What a live run view reads and draws, kept cheap so that watching a run costs the run nothing.

- ``REDRAW_S``: how often the live view redraws (seconds; the page's fragment interval).
- ``downsample_history(frame, max_points=...)``: at most ``max_points`` rows of a per-step history for the
  charts, keeping the first and last step and the last step of every epoch.
- ``StepCache`` / ``live_metrics``: a cache of the steps read so far, so each redraw reads only
  the rows written since the last one (``RunStore.steps(run_id, after_step=k)``); ``SHARED_STEPS`` is the
  process-wide one every session uses, so twenty watchers of one run read its new rows once, not twenty times.
- ``SharedCache`` / ``FIGURES``: a thread-safe, process-wide LRU (optionally with a time to live) that builds each
  value once for all sessions; the live charts are kept in ``FIGURES`` by (run id, last step, chart inputs).
- ``redraw_interval(session_id)``: the live redraw interval, ``REDRAW_S`` for a few watchers and longer when many
  sessions watch at once, so that all of them together redraw at most ``REDRAWS_PER_S`` times a second (up to
  ``MAX_REDRAW_S``); ``chart_interval(every)``: the live charts, which cost a browser most, redraw ``CHART_EVERY``
  times less often than the progress and cards.
- ``followed_run(running, pending)``: the run a follow-the-queue view (the Watch page) shows.

Pure (no streamlit): the page puts ``SHARED_STEPS`` in its session state.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
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
#: Live redraws a second the server serves at most, all watching sessions together (each redraw costs the server
#: a rerun and every watcher's browser a re-render: measured, twenty browsers on a 2-core machine took a core).
REDRAWS_PER_S = 2.0
#: Slowest redraw (seconds), however many sessions watch.
MAX_REDRAW_S = 10.0
#: The live charts redraw this many times less often than the progress bar and the cards.
CHART_EVERY = 2
#: Seconds a session counts as watching after its last redraw: well over the slowest interval, so that a session
#: whose redraw comes late under load still counts (a count that flickers would make every session redraw its
#: whole page to take up a new interval).
WATCHER_WINDOW_S = 2.5 * MAX_REDRAW_S
#: A live view takes up a new interval (a whole-page redraw) only when it differs by more than this factor.
INTERVAL_SLACK = 1.3


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
    Values are shared, so callers must not modify them. A ``build`` may itself ``get`` other keys (the live
    charts' SVG is built from the cached figures): the lock is reentrant.
    """

    def __init__(self, *, max_items: int = 64, ttl_s: float | None = None) -> None:
        self.max_items, self.ttl_s, self.builds = max_items, ttl_s, 0
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.RLock()

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

    With ``n`` sessions seen within ``WATCHER_WINDOW_S`` s: ``n / REDRAWS_PER_S``, at least ``REDRAW_S`` and at most
    ``MAX_REDRAW_S`` (1.5 s for up to 3 watchers, 10 s for 20), so the server's redraws a second stay bounded.
    """
    now = time.monotonic() if now is None else now
    with _watchers_lock:
        _watchers[session_id] = now
        for sid in [sid for sid, seen in _watchers.items() if now - seen > WATCHER_WINDOW_S]:
            del _watchers[sid]
        n = len(_watchers)
    return min(MAX_REDRAW_S, max(REDRAW_S, n / REDRAWS_PER_S))


def interval_changed(registered: float, now: float) -> bool:
    """Whether a live view registered with ``registered`` s should redraw its page to take up ``now`` s: only when
    they differ by more than ``INTERVAL_SLACK`` times either way."""
    return now > registered * INTERVAL_SLACK or now < registered / INTERVAL_SLACK


def chart_interval(every: float) -> float:
    """Seconds between redraws of the live charts when the progress redraws every ``every`` s."""
    return CHART_EVERY * every


def followed_run(running: Sequence[str], pending: Sequence[str], *,
                 shown: Callable[[str], bool] = lambda run_id: True) -> str | None:
    """The run a follow-the-queue view shows: the first running one for which ``shown(run_id)`` holds (say, a
    training run, not an attack-lab job), else the first such queued one, else None."""
    return next((run_id for run_id in (*running, *pending) if shown(run_id)), None)


__all__ = ["CACHE_KEY", "CHART_EVERY", "FIGURES", "MAX_POINTS", "MAX_REDRAW_S", "REDRAWS_PER_S", "REDRAW_S",
           "SHARED_STEPS", "SharedCache", "StepCache", "chart_interval", "downsample_history", "followed_run",
           "interval_changed", "live_metrics", "redraw_interval"]
