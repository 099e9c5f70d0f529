"""Shared by bench_live_view.py and bench_watchers.py: start the app, drive it in headless Chromium, read its store.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package; never `playwright install`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dpcore.store.runs import ACTIVE_STATUSES, RunStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
RUN_IN_URL = re.compile(r"[?&]run=([^&#]+)")


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the server and the browser this benchmark started are stopped too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_latency(url: str, *, timeout: float = 60.0) -> float:
    """Seconds one GET of ``url``/_stcore/health took (``timeout`` when it failed or timed out)."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as response:
            response.read()
    except OSError:
        return timeout
    return time.perf_counter() - start


@contextlib.contextmanager
def running_app(runs_dir: Path, *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on a free localhost port with ``DPEXPLORER_RUNS_DIR=runs_dir``; yields its URL."""
    port = free_port()
    server_env = {**os.environ, "DPEXPLORER_RUNS_DIR": str(runs_dir), **(env or {})}
    log = open(runs_dir.parent / f"streamlit-{port}.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while health_latency(url, timeout=2) >= 2:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy on {url}; see {log.name}")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@contextlib.contextmanager
def chromium(*, idle: bool = False) -> Iterator[object]:
    """A headless Chromium (playwright Browser) launched from /usr/bin/chromium.

    With ``idle=True``, yields ``(browser, idle_browser)`` instead: a second Chromium from the same playwright whose
    every process runs in Linux's idle scheduling class (``chrt --idle 0``, through a small wrapper script), standing
    for users whose browsers run on their own machines: it takes only CPU the server, the workers and the first
    browser leave idle. (A ``nice`` wrapper does not do this: Chromium, run as root, resets its processes' nice
    values, -8 for the browser and GPU processes and 0 for renderers; the scheduling class survives.)
    """
    from playwright.sync_api import sync_playwright  # deferred: playwright (a dev dependency)

    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        idle_browser = None
        try:
            if not idle:
                yield browser
                return
            wrapper = Path(tmp) / "chromium-idle"
            wrapper.write_text(f'#!/bin/sh\nexec chrt --idle 0 {CHROMIUM} "$@"\n')
            os.chmod(wrapper, 0o755)
            idle_browser = playwright.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS)
            yield browser, idle_browser
        finally:
            if idle_browser is not None:
                idle_browser.close()
            browser.close()


def submit_through_train_page(page, url: str, config: Mapping[str, object]) -> tuple[str, float]:
    """Open the Train page with ``config`` in its URL, click Train; returns (run id, time.monotonic() of the click).

    The run id is read from the ``run=`` parameter the page puts in the URL once the run is submitted.
    """
    page.goto(f"{url}/?{urllib.parse.urlencode(config)}")
    page.get_by_text("Train a model with differential privacy").wait_for()
    button = page.get_by_role("button", name="Train", exact=True)
    button.wait_for()
    page.wait_for_timeout(1000)  # the reruns the URL settings started must finish before the click counts
    clicked = time.monotonic()
    button.click()
    page.wait_for_url(RUN_IN_URL)  # the page's default timeout
    return RUN_IN_URL.search(page.url).group(1), clicked


def wait_finished(store: RunStore, run_id: str, *, timeout: float, poll_s: float = 0.25) -> float:
    """Block until run ``run_id`` leaves queued/running; returns time.monotonic() when that was seen."""
    deadline = time.monotonic() + timeout
    while store.get(run_id).status in ACTIVE_STATUSES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {store.get(run_id).status} after {timeout:.0f} s")
        time.sleep(poll_s)
    return time.monotonic()


def wait_idle(store: RunStore, *, timeout: float, settle_s: float = 2.0) -> None:
    """Block until no run in ``store`` is queued or running (then ``settle_s`` more, for trailing attacks)."""
    deadline = time.monotonic() + timeout
    while any(record.status in ACTIVE_STATUSES for record in store.records()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still active after {timeout:.0f} s")
        time.sleep(0.5)
    time.sleep(settle_s)


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """{'p50': ..., 'p90': ..., 'p99': ..., 'max': ...} of ``values`` (seconds); empty dict without values."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {f"p{q}": ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] for q in qs}
    out["max"] = ordered[-1]
    return out
