"""Many watchers: does a server with 20 live views open stay responsive, and does its queue keep training?

Starts the app (``streamlit run app.py`` headless, a temporary ``DPEXPLORER_RUNS_DIR``) and one headless
Chromium, trains one short run (a warm-up, not counted), then runs the same queue of short runs twice, in
one run of this benchmark:
- unwatched: one tab submits ``--runs`` short runs (synthetic, ε = 3, 2 epochs, each with its non-private
  baseline; seeds differ) through the Train page, then goes to about:blank;
- watched: the same, with ``--watchers`` (20) more browser contexts, each watching a live run. With
  ``--watch-mode follow`` (the default) each opens the Watch live page (``/watch``) once, which follows the queue
  from run to run in the same page, as an audience would; with ``--watch-mode reload`` each opens a live run's
  view on the Train page (``/?run=<id>``) and, when that run has finished, loads the page of a run still queued
  or running (a full page load per move: the benchmark's only mode before the Watch page existed). In follow
  mode the 20 pages are opened and drawn before the phase starts (an audience opens the page before the demo),
  so the health probe, the Runs page loads and the throughput measure watching, not twenty page loads at once.
During each phase a thread GETs ``/_stcore/health`` every 0.5 s, and a fresh context loads the Runs page
(heading and table drawn) after the submissions. Prints health latency percentiles, the Runs page load
times, and the throughput (runs finished per minute, first click to last run finished) of both phases.
Targets: health < 1 s, Runs page < 3 s, watched throughput >= half the unwatched one.

    python bench/bench_watchers.py [--watchers 20] [--runs 6] [--phase-timeout 180] [--watch-mode follow|reload]
                                   [--watchers-idle]

``--watchers-idle`` runs the watchers' Chromium in the idle scheduling class, standing for an audience whose
browsers run on their own machines (the server machine then pays only for serving them).

Bounded in time: each phase stops submitting and waiting after --phase-timeout seconds (default 180) even
if runs are left (its throughput then counts only what finished); page loads give up after 30 s. The
whole benchmark takes at most about 10 minutes (2 phases, their last submission and Runs page loads, the
warm-up and start-up); on an idle machine about 2.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from live_common import (
    chromium,
    exit_cleanly_on_sigterm,
    health_latency,
    percentiles,
    running_app,
    submit_through_train_page,
    wait_idle,
)

from dpcore.store.runs import ACTIVE_STATUSES, RunStore

SHORT = {"dataset": "synthetic", "target_epsilon": "3", "epochs": "2"}
RETARGET_S = 5.0  # a watcher moves to another live run at most this often
ROUND_S = 10.0  # seconds at most one round of moving watchers may take
PAGE_TIMEOUT_MS = 30_000  # a page load or element that takes longer counts as not loaded
HEALTH_EVERY_S = 0.5


class HealthProbe(threading.Thread):
    """GETs the health endpoint every HEALTH_EVERY_S seconds until stopped; keeps the latencies (seconds)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.latencies, self.stop = url, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.latencies.append(health_latency(self.url, timeout=60))
            self.stop.wait(HEALTH_EVERY_S)


def runs_page_seconds(browser, url: str) -> float:
    """Seconds for a fresh context to show the Runs page with its table (PAGE_TIMEOUT_MS when it did not)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    start = time.perf_counter()
    try:
        page.goto(f"{url}/runs", timeout=PAGE_TIMEOUT_MS)
        page.get_by_role("heading", name="Runs").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)
        return time.perf_counter() - start
    except Exception:  # a page that never loads is the measurement, not an error
        return PAGE_TIMEOUT_MS / 1000
    finally:
        context.close()


class Watchers:
    """``n`` browser contexts, each kept on the live view of a run that is still queued or running.

    ``follow``: each opens the Watch live page once (it follows the queue itself); else each is moved by a page load.
    """

    def __init__(self, browser, url: str, n: int, *, follow: bool = False) -> None:
        self.url, self.pages, self.watching, self.moved, self.follow = url, [], [None] * n, [0.0] * n, follow
        self.contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(n)]
        self.pages = [context.new_page() for context in self.contexts]
        for page in self.pages if follow else ():  # an audience opens the page before the demo starts
            try:
                page.goto(f"{url}/watch", wait_until="commit", timeout=PAGE_TIMEOUT_MS)
            except Exception:  # a stalled server: that page counts as not watching
                continue
        for page in self.pages if follow else ():
            try:
                page.get_by_role("heading", name="Watch live").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            except Exception:
                continue

    def retarget(self, store: RunStore, run_ids: list[str], *, budget_s: float = ROUND_S) -> None:
        """Move each watcher whose run is over (or that has none) to an active run, round-robin, in ``budget_s``."""
        if self.follow:
            return  # the Watch page moves on by itself
        live = [run_id for run_id in run_ids if store.get(run_id).status in ACTIVE_STATUSES]
        if not live:
            return
        now = time.monotonic()
        for index, page in enumerate(self.pages):
            current = self.watching[index]
            if (current in live) or now - self.moved[index] < RETARGET_S:
                continue
            if time.monotonic() - now > budget_s:
                return  # a slow server: the others move on the next round
            target = live[index % len(live)]
            try:
                page.goto(f"{self.url}/?run={target}", wait_until="commit", timeout=PAGE_TIMEOUT_MS)
            except Exception:
                continue
            self.watching[index], self.moved[index] = target, now

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def phase(browser, url: str, store: RunStore, *, watchers: int, runs: int, timeout: float, seed0: int,
          watcher_browser=None, follow: bool = False) -> dict:
    """Submit ``runs`` short runs (with ``watchers`` live views open, in ``watcher_browser`` if given, else in
    ``browser``); returns this phase's figures."""
    crowd = Watchers(watcher_browser or browser, url, watchers, follow=follow) if watchers else None
    probe = HealthProbe(url)  # from here on: the watchers' pages are open (follow) or about to be (reload)
    probe.start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    before = {record.id for record in store.records()}
    first_click, runs_page, stalled_submits, submit_s = None, [], 0, []
    start = time.monotonic()
    deadline = start + timeout
    try:
        submitted = []
        for index in range(runs):
            if time.monotonic() > deadline:
                break  # submitting alone took the whole phase: what was submitted is the queue
            began = time.monotonic()
            try:
                run_id, clicked = submit_through_train_page(page, url, {**SHORT, "seed": str(seed0 + index)})
            except Exception:  # the Train page did not load or answer in PAGE_TIMEOUT_MS: a stalled server
                stalled_submits += 1
                continue
            first_click = first_click or clicked
            submit_s.append(time.monotonic() - began)
            submitted.append(run_id)
            if crowd:
                crowd.retarget(store, submitted)
        submitted_at = time.monotonic()
        page.goto("about:blank")
        runs_page.append(runs_page_seconds(browser, url))
        while time.monotonic() < deadline:
            mine = [record for record in store.records() if record.id not in before]
            if mine and all(record.status not in ACTIVE_STATUSES for record in mine):
                break
            if crowd:
                crowd.retarget(store, [record.id for record in mine])
            time.sleep(1.0)
        end = time.monotonic()
        runs_page.append(runs_page_seconds(browser, url))
    finally:
        probe.stop.set()
        context.close()
        if crowd:
            crowd.close()
    probe.join(timeout=70)
    mine = [record for record in store.records() if record.id not in before]
    finished = sum(record.status not in ACTIVE_STATUSES for record in mine)
    minutes = (end - (first_click or start)) / 60
    return {"watchers": watchers, "runs": len(mine), "finished": finished, "minutes": minutes,
            "per_minute": finished / minutes, "health": percentiles(probe.latencies), "runs_page": runs_page,
            "stalled_submits": stalled_submits, "submit_s": submit_s,
            "submitting_min": (submitted_at - (first_click or start)) / 60}


def _line(name: str, figures: dict) -> str:
    health = ", ".join(f"{key} {value:.2f}" for key, value in figures["health"].items())
    pages = ", ".join(f"{value:.1f}" for value in figures["runs_page"])
    return (f"{name}: {figures['finished']}/{figures['runs']} runs finished in {figures['minutes']:.2f} min = "
            f"{figures['per_minute']:.1f} runs/min; health s ({health}); Runs page s ({pages}); "
            f"{figures['stalled_submits']} submission(s) gave up after {PAGE_TIMEOUT_MS // 1000} s; each submission "
            f"(Train page load, form, click) took {', '.join(f'{s:.1f}' for s in figures['submit_s'])} s, "
            f"{figures['submitting_min'] * 60:.1f} s from first click to last")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--runs", type=int, default=6, help="short runs submitted per phase (each with a baseline)")
    parser.add_argument("--phase-timeout", type=float, default=180.0, help="seconds at most per phase")
    parser.add_argument("--watch-mode", choices=("follow", "reload"), default="follow",
                        help="follow: each watcher opens /watch once and it follows the queue (default); reload: "
                             "each watches /?run=<id> and loads another run's page when its run ends")
    parser.add_argument("--watchers-idle", action="store_true",
                        help="run the watchers' Chromium in the idle scheduling class: models an audience whose "
                             "browsers run on their own machines, as in a class")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-watchers-") as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        with running_app(runs_dir) as url, chromium(idle=args.watchers_idle) as browsers:
            browser, others = browsers if args.watchers_idle else (browsers, None)
            store = RunStore(runs_dir)
            warm = browser.new_context()  # one run first, not counted: it pays for starting the worker(s)
            warm_page = warm.new_page()
            warm_page.set_default_timeout(180_000)  # the first page load imports torch and the data in the server
            submit_through_train_page(warm_page, url, {**SHORT, "seed": "1"})
            warm.close()
            wait_idle(store, timeout=args.phase_timeout)
            alone = phase(browser, url, store, watchers=0, runs=args.runs, timeout=args.phase_timeout, seed0=100)
            print(_line("unwatched", alone), flush=True)
            crowd = phase(browser, url, store, watchers=args.watchers, runs=args.runs, timeout=args.phase_timeout,
                          seed0=200, watcher_browser=others, follow=args.watch_mode == "follow")
            idle = ", their Chromium in the idle class" if args.watchers_idle else ""
            print(_line(f"{args.watchers} watchers ({args.watch_mode}{idle})", crowd), flush=True)
            store.close()
    health = crowd["health"].get("max", float("inf"))
    ratio = crowd["per_minute"] / alone["per_minute"] if alone["per_minute"] else float("nan")
    print(f"targets: health max {health:.2f} s < 1 s {'met' if health < 1 else 'NOT met'}; "
          f"Runs page {max(crowd['runs_page']):.1f} s < 3 s {'met' if max(crowd['runs_page']) < 3 else 'NOT met'}; "
          f"throughput ratio {ratio:.2f} >= 0.5 {'met' if ratio >= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
