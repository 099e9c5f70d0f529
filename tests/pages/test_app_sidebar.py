"""The shared sidebar (AppTest through app.py): device, runs folder and the live job queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpcore.jobs import queue as jobs

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


@pytest.fixture(autouse=True)
def _no_leftover_workers():
    yield
    jobs.shutdown()


def sidebar_text(at: AppTest) -> str:
    at.run()
    assert not at.exception, at.exception
    return "\n".join(str(element.value) for element in at.sidebar.markdown)


@pytest.mark.fresh_server
@pytest.mark.parametrize("fresh_sessions", [1, 2])
def test_every_session_goes_through_app_py(isolated_dirs, fresh_sessions):
    """A page opened as on a fresh server reruns through app.py, in every session, not only the first."""
    for _ in range(fresh_sessions):
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.switch_page("pages/guide.py")
        assert "Idle" in sidebar_text(at)
        assert any(title.value.startswith("Guide") for title in at.title)


def _app_pages() -> list[str]:
    import sys

    sys.path.insert(0, str(Path(APP).parent))
    from app import PAGES  # the app's own list: a page added there is checked here too

    return [path for path, *_ in PAGES]


@pytest.mark.fresh_server
@pytest.mark.parametrize("page", _app_pages())
def test_a_deep_link_to_every_page_goes_through_app_py(isolated_dirs, page):
    """Each page of the navigation, opened first on a fresh server (a shared link), reruns through app.py: the app's
    sidebar (its job queue) is drawn, not the page file alone with Streamlit's raw file menu."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(page)
    assert "Idle" in sidebar_text(at), f"{page} ran without app.py: it must call ui.route_through_app()"


def test_sidebar_lists_the_running_and_waiting_jobs_then_idle(isolated_dirs, hold_worker):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/guide.py")  # a page that starts nothing itself
    text = sidebar_text(at)
    assert "Idle" in text
    assert any(device in text for device in ("cpu", "cuda", "mps"))

    queue = jobs.get_queue()
    running, release = hold_worker(queue, name="holding job")
    queue.submit({"what": "wait"}, name="waiting job", kind="test", runner=lambda *args: None)
    text = sidebar_text(at)
    assert ":material/play_circle: holding job" in text and ":material/schedule: #1 waiting job" in text
    assert "Idle" not in text

    release.set()
    assert queue.join(TIMEOUT)
    assert queue.store.get(running).status == "done"
    text = sidebar_text(at)
    assert "Idle" in text and "holding job" not in text


def test_opening_the_app_continues_a_sweep_a_restart_interrupted(isolated_dirs, monkeypatch):
    from dpcore.config import TrainConfig
    from dpcore.jobs import sweep as sweeps
    from dpcore.store.runs import DONE, RunStore

    trained = []
    monkeypatch.setattr(sweeps, "train_member", lambda store, run_id, should_stop=None: trained.append(run_id))
    monkeypatch.setenv("DPEXPLORER_EXECUTOR", "thread")  # the patch above only exists in this process
    store = RunStore(isolated_dirs / "runs")
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 4.0),
                            max_grad_norms=(1.0,), seeds=(0,), include_baseline=False)
    sweep = sweeps.save_sweep(store, spec)  # recorded, then the app stopped before any run was queued

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/guide.py")
    at.run()
    assert not at.exception, at.exception
    assert any("Continued a sweep interrupted" in toast.value for toast in at.toast)
    assert jobs.get_queue(store.root).join(TIMEOUT)
    states = sweeps.member_states(store, sweep.id)
    assert [m.state for m in states] == [DONE, DONE] and len(trained) == 2
    at.run()
    assert not any("Continued" in toast.value for toast in at.toast)  # said once per session


def test_an_unusable_runs_directory_is_explained_not_a_traceback(tmp_path, monkeypatch):
    a_file = tmp_path / "runs-is-a-file"
    a_file.write_text("not a folder")
    monkeypatch.setenv("DPEXPLORER_RUNS_DIR", str(a_file))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "DP Explorer cannot start" in error.value and "is a file, not a folder" in error.value


def test_the_sidebar_says_where_jobs_run(isolated_dirs, monkeypatch):
    monkeypatch.delenv("DPEXPLORER_EXECUTOR", raising=False)
    monkeypatch.setenv("DPEXPLORER_WORKERS", "2")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/guide.py")
    at.run()
    assert not at.exception, at.exception
    captions = [str(caption.value) for caption in at.sidebar.caption]
    assert any(caption.startswith("Jobs run on local workers (2 worker processes × ") for caption in captions)


def test_an_unreachable_ray_cluster_is_explained_not_a_traceback(isolated_dirs, monkeypatch):
    monkeypatch.setenv("DPEXPLORER_RAY_ADDRESS", "no-such-host.invalid:6379")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/guide.py")
    at.run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "Jobs cannot start" in error.value and "cannot reach a Ray cluster" in error.value
    assert "ray start --head" in error.value
