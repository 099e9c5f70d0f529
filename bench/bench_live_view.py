"""Does watching a run slow it down? The digits ε = 3 run, unwatched and watched, in one run of this benchmark.

Starts the app (``streamlit run app.py`` headless on a free port, a temporary ``DPEXPLORER_RUNS_DIR``),
then, in headless Chromium, for each case opens the Train page with the digits recipe at ε = 3 in its URL
and clicks Train:
- unwatched: the tab goes to about:blank right after the click (no session polls the run);
- watched: the tab stays on the run's live view until the run has finished.
The wall time of a case is from the click to the run leaving queued/running in the store (polled every
0.25 s from this process). Between cases the queue is left to go idle (baseline, attack). One warm-up run
(not counted) pays for starting a worker; then --repeats pairs, the order alternating (U W, W U, ...).
Prints each time, the medians, their ratio (target: watched <= 1.15 x unwatched) and the store's own
created -> finished times.

    python bench/bench_live_view.py [--repeats 2] [--warmup 1] [--timeout 600] [--epochs N]

Takes about (1 + 2 x repeats) x the run's time plus start-up; --timeout bounds each case.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

from live_common import (
    chromium,
    exit_cleanly_on_sigterm,
    running_app,
    submit_through_train_page,
    wait_finished,
    wait_idle,
)

from dpcore.store.runs import RunStore

CONFIG = {"dataset": "digits", "target_epsilon": "3"}  # the rest from the digits recipe (15 epochs, batch 256)
TARGET_RATIO = 1.15


def _stored_seconds(store: RunStore, run_id: str) -> float:
    record = store.get(run_id)
    if not (record.created and record.finished):
        return float("nan")
    return (datetime.fromisoformat(record.finished) - datetime.fromisoformat(record.created)).total_seconds()


def one_case(browser, url: str, store: RunStore, *, watched: bool, timeout: float,
             config: dict[str, str] = CONFIG) -> tuple[float, float, str]:
    """Train ``config`` once; returns (click -> finished seconds, store created -> finished seconds, final status)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        run_id, clicked = submit_through_train_page(page, url, config)
        if not watched:
            page.goto("about:blank")
        done = wait_finished(store, run_id, timeout=timeout)
        return done - clicked, _stored_seconds(store, run_id), store.get(run_id).status
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="pairs (unwatched, watched) to time; medians printed")
    parser.add_argument("--warmup", type=int, default=1, help="unwatched runs first, not counted")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per case")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs instead of the recipe's 15: a longer run (e.g. 60) measures the ratio "
                             "above the noise of a ~1 s run")
    args = parser.parse_args()
    config = CONFIG if args.epochs is None else {**CONFIG, "epochs": str(args.epochs)}
    exit_cleanly_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        with running_app(runs_dir) as url, chromium() as browser:
            store = RunStore(runs_dir)
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.warmup):  # the first run pays for starting a worker and loading torch and the data
                wall, _, status = one_case(browser, url, store, watched=False, timeout=args.timeout, config=config)
                print(f"warm-up: {wall:6.1f} s click -> finished ({status}; not counted)", flush=True)
                wait_idle(store, timeout=args.timeout)
            for repeat in range(args.repeats):
                for watched in (False, True) if repeat % 2 == 0 else (True, False):  # alternate the order
                    wall, stored, status = one_case(browser, url, store, watched=watched, timeout=args.timeout,
                                                     config=config)
                    times[watched].append(wall)
                    print(f"[{repeat + 1}] {'watched  ' if watched else 'unwatched'}: {wall:6.1f} s click -> finished "
                          f"(store created -> finished {stored:.1f} s, {status})", flush=True)
                    wait_idle(store, timeout=args.timeout)
            store.close()
    unwatched, watched = statistics.median(times[False]), statistics.median(times[True])
    ratio = watched / unwatched
    print(f"digits eps=3, {config.get('epochs', 'recipe')} epochs: unwatched {unwatched:.1f} s, "
          f"watched {watched:.1f} s, ratio {ratio:.2f} "
          f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'})")


if __name__ == "__main__":
    main()
