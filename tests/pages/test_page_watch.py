"""The Watch live page (AppTest): it follows the job queue from run to run, and watches one run by link."""

from __future__ import annotations

import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.jobs import queue as jobs
from dpcore.store.runs import DONE, RUNNING

PAGE = "../../pages/watch.py"
TIMEOUT = 60

pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _training_until(release: threading.Event):
    """A runner that stands for a training: ten steps stored, then it waits for ``release``."""
    def runner(run_id, store, should_stop):
        store.set_progress(run_id, 10, 100)
        store.append_steps(run_id, [dict(step=s, epoch=0, epsilon=0.01 * s, clip_fraction=0.5, loss=1.0,
                                         batch_size=64) for s in range(10)])
        while not release.is_set() and not should_stop():
            time.sleep(0.01)
    return runner


def _shown_run(at: AppTest) -> str:
    """The id of the run whose header the page shows ("Run `<id>` · ..." caption)."""
    ids = [text.split("`")[1] for text in (caption.value for caption in at.caption) if text.startswith("Run `")]
    assert len(ids) == 1, texts(at.caption)
    return ids[0]


def test_watch_follows_the_queue_from_run_to_run(monkeypatch, hold_worker):
    monkeypatch.setenv(jobs.EXECUTOR_ENV, "thread")  # the runners below are closures
    queue = jobs.get_queue()
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and "Nothing is training now" in texts(at.info)  # empty store: waits, no error

    _held, release_held = hold_worker(queue, name="an attack-lab job")  # not a training: never followed
    first, second = threading.Event(), threading.Event()
    config = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1000).resolve()
    run_a = queue.submit(config, name="run A", runner=_training_until(first))
    run_b = queue.submit(config, name="run B", runner=_training_until(second))
    at.run()
    assert not at.exception and _shown_run(at) == run_a  # queued behind the other job: the first training
    assert "Waiting in the queue" in texts(at.info) and "Follows the job queue" in texts(at.caption)

    release_held.set()
    wait_for(lambda: queue.store.get(run_a).status == RUNNING and queue.store.get(run_a).steps_done == 10)
    at.run()
    assert not at.exception and _shown_run(at) == run_a
    assert any("Step " in bar.proto.text for bar in at.get("progress"))
    assert "<svg" in texts(at.markdown) and not at.get("plotly_chart"), "the live charts, as static SVG"
    assert not [button for button in at.button if "cancel" in button.key]  # an audience does not cancel

    first.set()  # run A stops training: the page moves on to run B by itself
    assert queue.wait(run_a, TIMEOUT).status == DONE
    wait_for(lambda: queue.store.get(run_b).status == RUNNING)
    at.run()
    assert not at.exception and _shown_run(at) == run_b

    second.set()
    assert queue.wait(run_b, TIMEOUT).status == DONE
    at.run()
    assert not at.exception and "Nothing is training now" in texts(at.info)
    assert "The last run" in texts(at.markdown) and _shown_run(at) == run_b
    assert "Test accuracy" in texts(at.markdown) and not at.get("plotly_chart")  # the light result view
    assert not at.button, "an audience page offers no Cancel, no Continue training"


def test_watch_one_run_by_link_and_an_unknown_one():
    from dpcore.store.runs import RunStore, default_root

    store = RunStore(default_root())
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0).resolve())
    store.set_status(run_id, DONE, stop_status="finished")
    store.update_summary(run_id, test_accuracy=0.8, mia_auc=0.55, mia_status="done", final_epsilon=2.9)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception and _shown_run(at) == run_id
    assert f"Watching run `{run_id}`" in texts(at.caption)
    cards = texts(at.markdown)  # the summary cards, as one HTML block
    assert "Test accuracy" in cards and "80.0%" in cards and "Attack AUC" in cards and "0.550" in cards
    at.query_params["run"] = "no-such-run"
    at.run()
    assert not at.exception and "is not in" in texts(at.warning)
    store.close()
