"""Answers computed before anyone asks: the Frontier page of each of the newest finished sweeps
(KBIT_DASHBOARD_WARM_SWEEPS, its default metric, no filter but the sweep) is computed and stored
(kbit.dashboard.stored) once the sweep finishes, so a team's first look at its sweep reads one row
instead of waiting for the whole analysis (8 s for a 10,000-config sweep).

A finished sweep's runs no longer change, so each is warmed once per dashboard process; views of
many sweeps (a family, a team) change with every sweep and are brought up to date when asked
(stored.stored shows their previous answer meanwhile). No Streamlit here: the app runs `keep_warm`
in one thread per process.
"""

from __future__ import annotations

import logging
import time

from kbit import settings
from kbit.analysis.frontier import lower_is_better
from kbit.dashboard import data, urlstate
from kbit.db import queries, session_scope
from kbit.errors import TooManyRuns

log = logging.getLogger(__name__)


def warm_finished_sweeps(url: str | None, newest: int, warmed: dict[int, dict]) -> list[int]:
    """Compute and store the default Frontier view of each of the `newest` finished sweeps not in
    `warmed` (sweep id -> its runs' fingerprint when warmed; updated here); the sweeps warmed now."""
    with session_scope(data.engine_for(url)) as s:
        finished = [row["sweep_id"] for row in queries.list_sweeps(s)
                    if row["status"] == "done" and row["done"] + row["cached"]][:newest]
        metric = urlstate.default_metric([f"{task}/{name}" for task, name in queries.list_metrics(s)])
    if metric is None:
        return []
    task, name = metric.split("/", 1)
    done = []
    for sweep_id in finished:
        filters = data.view_filters(sweeps=(sweep_id,))
        try:
            found = data.fingerprint(url, **dict(filters))
        except TooManyRuns:
            continue
        if warmed.get(sweep_id) == found:
            continue
        # The page's own two calls (frontier_page.render), so their answers are stored under its keys;
        # computed in the background, one at a time, never ahead of a page that waits for its own.
        data.points(url, task, name, filters, "bits", (), lower_is_better(name), wait=False)
        data.analysis(url, task, name, **dict(filters), wait=False)
        warmed[sweep_id] = found
        done.append(sweep_id)
    return done


def keep_warm(url: str | None, every_s: float) -> None:
    """Warm the newest finished sweeps every `every_s` seconds, for the life of the process."""
    newest = settings.dashboard_warm_sweeps()
    warmed: dict[int, dict] = {}
    while newest:
        try:
            started = time.monotonic()
            done = warm_finished_sweeps(url, newest, warmed)
            if done:
                log.info("computed the Frontier page of sweep(s) %s in %.1f s", done, time.monotonic() - started)
        except Exception:  # a database away for a while: the pages say so; try again next round
            log.warning("warming the newest sweeps' pages failed; trying again in %.0f s", every_s, exc_info=True)
        time.sleep(every_s)
