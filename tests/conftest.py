"""Shared test set-up: every test gets private runs/data directories, never the user's."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # pages import `from pages import ui`, as under `streamlit run app.py`
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def one_thread_and_no_leftover_jobs():
    """One torch thread in this process for the test; afterwards every queue is shut down (its jobs
    cancelled and joined, even when the test failed) and the thread count put back."""
    import torch

    from dpcore.jobs import queue as jobs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    jobs.shutdown()
    torch.set_num_threads(threads)


@pytest.fixture
def train_stored():
    """``train_stored(store, cfg) -> run_id``: ``cfg`` stored as a run and trained in this thread the way the job
    queue does (with its membership attack); asserts the run finished 'done'."""
    from dpcore.jobs.queue import train_runner
    from dpcore.store.runs import DONE

    def train(store, cfg) -> str:
        run_id = store.create_run(cfg)
        store.set_status(run_id, "running")
        train_runner(run_id, store, lambda: False)
        assert store.get(run_id).status == DONE
        return run_id

    return train


@pytest.fixture
def store(tmp_path):
    """A run store in this test's own runs directory (the one ``isolated_dirs`` points the app at)."""
    from dpcore.store.runs import RunStore

    store = RunStore(tmp_path / "runs")
    yield store
    store.close()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Point the run store and dataset cache at per-test temporary folders."""
    monkeypatch.setenv("DPEXPLORER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DPEXPLORER_DATA_DIR", str(tmp_path / "data-cache"))
    return tmp_path


@pytest.fixture(autouse=True)
def served_app(request, monkeypatch):
    """AppTest through app.py as on a server that has already served app.py once.

    AppTest resets Streamlit's pages-folder mode on every run, so each run of app.py would
    start as on a fresh server: the page runs alone, ``ui.route_through_app`` reruns through
    app.py, and that rerun drops the click that started it. A live server leaves the mode
    off after its first st.navigation call; this fixture does the same. Tests of the
    fresh-server path carry ``@pytest.mark.fresh_server`` and keep Streamlit's behaviour.
    """
    if request.node.get_closest_marker("fresh_server"):
        return
    from streamlit.runtime.pages_manager import PagesManager

    original_init = PagesManager.__init__

    def init_then_navigation_mode(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_then_navigation_mode)


@pytest.fixture
def hold_worker():
    """``hold_worker(queue, name=...) -> (run_id, release)``: a job that keeps the queue's worker busy.

    The job starts before the call returns and ends when ``release`` is set, when it is
    cancelled, or at the end of the test.
    """
    releases: list[threading.Event] = []

    def hold(queue, name: str = "hold the worker") -> tuple[str, threading.Event]:
        release, started = threading.Event(), threading.Event()

        def blocker(run_id, store, should_stop):
            started.set()
            while not release.is_set() and not should_stop():
                time.sleep(0.01)

        run_id = queue.submit({"what": name}, name=name, kind="test", runner=blocker)
        releases.append(release)
        assert started.wait(5), "the holding job did not start"
        return run_id, release

    yield hold
    for release in releases:
        release.set()
