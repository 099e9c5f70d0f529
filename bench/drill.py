"""Fault drill (issue 13): kill -9 the CLI sweep and the app mid-run, then 20 browser sessions at once.

Run: ``python bench/drill.py [--sessions 20] [--skip-app] [--skip-sessions] [--no-bad-inputs]``. Every part is
bounded in time (a few minutes in all on an idle machine). Prints:

- runs lost (must be 0): runs that existed before a kill -9 and are missing after it, finished runs whose
  status changed, runs whose stored epochs went down;
- runs stuck: runs still queued/running after the stale window (``dpcore.store.heartbeat.STALE_S`` + 5 s)
  once their process was killed, and how long the store took to mark them interrupted;
- whether the interrupted sweep member kept its per-epoch checkpoint (so it can be continued), and whether the
  app's queued baseline was queued again when the app restarted;
- health-check latency (``/_stcore/health``, p50/p90/max) while ``--sessions`` headless Chromium sessions
  load the app;
- bad inputs tried / handled: the test cases of the suite's bad-input tests (``BAD_INPUT_TESTS``), run / passed.

Needs Debian's chromium and the playwright package for the app and session drills (skipped, and said so,
without them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/live_common.py

from live_common import (
    CHROMIUM,
    ROOT,
    chromium,
    exit_cleanly_on_sigterm,
    free_port,
    health_latency,
    percentiles,
    submit_through_train_page,
)

from dpcore.engine.checkpoint import CHECKPOINT_FILE
from dpcore.store.heartbeat import STALE_S
from dpcore.store.runs import ACTIVE_STATUSES, DONE, INTERRUPTED, RUNNING, RunStore

HEALTH_TIMEOUT_S = 10.0  # a health check slower than this counts as failed
SESSIONS_BOUND_S = 300.0  # the sessions drill waits at most this long for every session to draw its page
SETTLE_S = STALE_S + 5.0  # after a kill, every run must have left queued/running within this many seconds
# The suite's bad-input tests (issue 13): link values, CLI output paths, CSV ranges, uploads and a read-only folder.
# Most are parametrized over the bad values, so a test case is one bad input tried.
BAD_INPUT_TESTS = ["tests/pages/test_url_values.py", "tests/test_cli_paths.py", "tests/engine/test_csv_ranges.py",
                   "tests/store/test_uploads_and_access.py"]


def snapshot(store: RunStore) -> dict[str, tuple[str, int]]:
    """{run id: (status, epochs stored)} of every run in ``store``."""
    return {record.id: (record.status, len(store.epochs(record.id))) for record in store.records()}


def lost_runs(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> list[str]:
    """Runs of ``before`` missing from ``after``, finished runs whose status changed, runs that lost epochs."""
    lost = []
    for run_id, (status, epochs) in before.items():
        now = after.get(run_id)
        if now is None or (status == DONE and now[0] != DONE) or now[1] < epochs:
            lost.append(run_id)
    return lost


def settle(root: Path, *, timeout: float = SETTLE_S) -> tuple[RunStore, float | None]:
    """Open ``root`` as a new reader and poll until no run is active; (store, seconds taken or None if stuck)."""
    store = RunStore(root)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not store.records(status=ACTIVE_STATUSES):
            return store, time.monotonic() - started
        time.sleep(0.25)
    return store, None


def wait_for(condition, *, timeout: float, poll_s: float = 0.25) -> bool:
    """Poll ``condition()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return True
        time.sleep(poll_s)
    return False


def kill_group(process: subprocess.Popen) -> None:
    """kill -9 the process and every process it started (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def report_kill(name: str, before: dict, store: RunStore, waited: float | None) -> dict[str, object]:
    after = snapshot(store)
    lost = lost_runs(before, after)
    stuck = [run_id for run_id, (status, _) in after.items() if status in ACTIVE_STATUSES]
    interrupted = [store.get(run_id) for run_id, (status, _) in after.items() if status == INTERRUPTED]
    print(f"[{name}] runs before kill: {len(before)}, runs lost: {len(lost)}, runs stuck: {len(stuck)}, "
          f"marked interrupted in: {'-' if waited is None else f'{waited:.1f} s'}")
    for record in interrupted[:3]:
        print(f"[{name}]   {record.id}: {record.stop_reason}")
    return {"lost": len(lost), "stuck": len(stuck), "interrupted": interrupted}


# ---------------------------------------------------------------------- kill -9 of the CLI sweep
def cli_sweep_drill(work: Path) -> dict[str, object]:
    """``python -m dpcore sweep`` killed with SIGKILL after its first member finished an epoch."""
    root = work / "cli-runs"
    command = [sys.executable, "-m", "dpcore", "sweep", "--dataset", "synthetic", "--epochs", "30",
               "--epsilons", "1,4", "--seeds", "0", "--runs-dir", str(root)]
    log = open(work / "cli-sweep.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        store = None

        def an_epoch_is_stored() -> bool:
            nonlocal store
            store = store or RunStore(root)
            return any(len(store.epochs(r.id)) >= 2 for r in store.records(status=RUNNING))

        if not wait_for(an_epoch_is_stored, timeout=180):
            print(f"[cli sweep] no member finished two epochs within 180 s; see {log.name}")
            return {"lost": 0, "stuck": 0, "skipped": True}
        before = snapshot(store)
        running = [run_id for run_id, (status, _) in before.items() if status == RUNNING]
    finally:
        kill_group(process)
        log.close()
    reader, waited = settle(root)
    result = report_kill("cli sweep", before, reader, waited)
    resumable = sum((reader.artifacts_path(run_id) / CHECKPOINT_FILE).exists() for run_id in running)
    print(f"[cli sweep] interrupted members with a checkpoint (can be continued): {resumable}/{len(running)}")
    return result


# ---------------------------------------------------------------------- kill -9 of the app
@contextlib.contextmanager
def app_server(root: Path, work: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run app.py`` in its own session on a free port; yields (url, process); killed at the end."""
    port = free_port()
    log = open(work / f"app-{port}.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "DPEXPLORER_RUNS_DIR": str(root), "OMP_NUM_THREADS": "1"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for(lambda: health_latency(url, timeout=2) < 2, timeout=90):
            raise RuntimeError(f"the app did not become healthy on {url}; see {log.name}")
        yield url, process
    finally:
        if process.poll() is None:
            kill_group(process)
        log.close()


def app_drill(work: Path) -> dict[str, object]:
    """Train (with its baseline) through the app, kill -9 the server mid-run, reopen; restart: baseline queued?"""
    root = work / "app-runs"
    root.mkdir()
    config = {"dataset": "synthetic", "target_epsilon": "3", "epochs": "40"}
    with chromium() as browser:
        with app_server(root, work) as (url, process):
            page = browser.new_page()
            run_id, _ = submit_through_train_page(page, url, config)
            store = RunStore(root)
            if not wait_for(lambda: len(store.epochs(run_id)) >= 1, timeout=180):
                print("[app] the run stored no epoch within 180 s")
            before = snapshot(store)
            kill_group(process)
        reader, waited = settle(root)
        result = report_kill("app", before, reader, waited)
        baseline = reader.get(run_id).summary.get("baseline_run")
        if not baseline:
            print("[app] the run has no linked baseline (the Train page's baseline box was off)")
            return result
        with app_server(root, work) as (url, _):
            page = browser.new_page()
            page.goto(f"{url}/runs")  # the first session of the restarted app continues what was left
            requeued = wait_for(lambda: (RunStore(root).get(run_id).summary.get("baseline_run") != baseline
                                         and RunStore(root).get(RunStore(root).get(run_id).summary["baseline_run"])
                                         .status != INTERRUPTED), timeout=60)
        print(f"[app] queued baseline {baseline} queued again after the restart: {'yes' if requeued else 'NO'}")
        result["baseline_requeued"] = requeued
    return result


# ---------------------------------------------------------------------- 20 sessions
def sessions_drill(work: Path, *, sessions: int) -> dict[str, float]:
    """``sessions`` Chromium contexts open the app at once while /_stcore/health is sampled; latency percentiles."""
    root = work / "session-runs"
    root.mkdir()
    latencies: list[float] = []
    stop = threading.Event()
    with app_server(root, work) as (url, _):
        def sample() -> None:
            while not stop.is_set():
                latencies.append(health_latency(url, timeout=HEALTH_TIMEOUT_S))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        opened = 0
        started = time.monotonic()
        with chromium() as browser:
            contexts = [browser.new_context() for _ in range(sessions)]
            pages = [context.new_page() for context in contexts]
            for page in pages:
                page.goto(url, wait_until="commit", timeout=60_000)
            deadline = time.monotonic() + SESSIONS_BOUND_S
            for page in pages:
                with contextlib.suppress(Exception):
                    left_ms = max(1_000, int((deadline - time.monotonic()) * 1000))
                    page.get_by_text("Train a model with differential privacy").wait_for(timeout=left_ms)
                    opened += 1
            loaded = time.monotonic() - started
            time.sleep(5)  # all sessions connected at once
        stop.set()
        sampler.join(timeout=15)
    stats = percentiles(latencies)
    slow = sum(latency >= 1.0 for latency in latencies)
    failed = sum(latency >= HEALTH_TIMEOUT_S for latency in latencies)
    print(f"[sessions] {opened}/{sessions} sessions drew the Train page in {loaded:.1f} s; health-check latency "
          + ", ".join(f"{key} {value * 1000:.0f} ms" for key, value in stats.items())
          + f" ({len(latencies)} checks, {slow} took >= 1 s, {failed} failed or timed out after "
          f"{HEALTH_TIMEOUT_S:.0f} s)")
    return stats


# ---------------------------------------------------------------------- bad inputs
def bad_inputs() -> tuple[int, int] | None:
    """(tried, handled): test cases of ``BAD_INPUT_TESTS`` (those present) run / passed; None on a timeout."""
    files = [name for name in BAD_INPUT_TESTS if (ROOT / name).exists()]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return None
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|errors)", tail)}
    passed = counts.get("passed", 0)
    return passed + counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0), passed


def main(argv: list[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="browser sessions opened at once (default 20)")
    parser.add_argument("--skip-app", action="store_true", help="leave out the kill -9 of the app")
    parser.add_argument("--skip-sessions", action="store_true", help="leave out the concurrent-sessions drill")
    parser.add_argument("--no-bad-inputs", action="store_true", help="leave out the bad-input tests")
    args = parser.parse_args(argv)
    browser = Path(CHROMIUM).exists() or shutil.which("chromium")
    work = Path(tempfile.mkdtemp(prefix="dp-drill-"))
    results = [cli_sweep_drill(work)]
    if not args.skip_app:
        if browser:
            results.append(app_drill(work))
        else:
            print("[app] skipped: no chromium")
    stats: dict[str, float] = {}
    if not args.skip_sessions:
        stats = sessions_drill(work, sessions=args.sessions) if browser else {}
    counts = None if args.no_bad_inputs else bad_inputs()
    lost = sum(int(r["lost"]) for r in results)
    stuck = sum(int(r["stuck"]) for r in results)
    print()
    print(f"runs lost: {lost} (must be 0)")
    print(f"runs stuck: {stuck} (after a {SETTLE_S:.0f} s stale window)")
    print("health-check latency: " + (", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stats.items())
                                      if stats else "not measured"))
    print("bad inputs tried / handled: " + (f"{counts[0]} / {counts[1]}" if counts else "not run"))
    print(f"(logs and runs folders in {work})")
    return 0 if lost == 0 and stuck == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
