"""Answers computed before anyone asks: the Frontier page (its default metric) of each of the
newest finished sweeps (KBIT_DASHBOARD_WARM_SWEEPS), and of each model family those sweeps ran,
is computed and stored (kbit.dashboard.stored), so a team's first look at its sweep or family
reads one row instead of waiting for the whole analysis (5 s for a 10,000-run sweep, 17-22 s for
a 200,000-run family among 1M runs).

A finished sweep's runs no longer change, so each is warmed once per dashboard process. A family
changes whenever one of its runs finishes; it is warmed again when it changed, at most every
REWARM_S (a busy family would otherwise keep the background thread recomputing it; its page shows
the previous answer meanwhile). Other views (a team, other filters) are computed when asked. No
Streamlit here: the app runs `keep_warm` in one thread per process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from kbit import settings
from kbit.analysis.frontier import lower_is_better
from kbit.dashboard import data, urlstate
from kbit.db import queries, session_scope
from kbit.errors import TooManyRuns

log = logging.getLogger(__name__)

REWARM_S = 600.0


@dataclass
class Warmed:
    """What one process has warmed: (kind, name) -> (the view's fingerprint, when), and each
    finished sweep's families (they no longer change, so each is looked up once)."""

    views: dict = field(default_factory=dict)
    families: dict = field(default_factory=dict)


def warm_newest(url: str | None, newest: int, warmed: Warmed, now: float | None = None) -> list[tuple[str, object]]:
    """Queue for the background thread the default Frontier view of each of the `newest` finished
    sweeps and of their families, unless `warmed` (updated here) says it is done: a sweep once, a
    family again once its runs changed and REWARM_S passed. Returns the views queued now, as
    (kind, name) pairs."""
    now = time.monotonic() if now is None else now
    with session_scope(data.engine_for(url)) as s:
        sweeps = [row["sweep_id"] for row in queries.list_sweeps(s)
                  if row["status"] == "done" and row["done"] + row["cached"]][:newest]
        metric = urlstate.default_metric([f"{task}/{name}" for task, name in queries.list_metrics(s)])
        for sweep_id in sweeps:
            if sweep_id not in warmed.families:
                warmed.families[sweep_id] = queries.sweep_families(s, sweep_id)
    families = list(dict.fromkeys(f for sweep_id in sweeps for f in warmed.families[sweep_id]))
    if metric is None:
        return []
    task, name = metric.split("/", 1)
    queued = []
    views = [("sweep", sweep_id, data.view_filters(sweeps=(sweep_id,))) for sweep_id in sweeps]
    views += [("family", family, data.view_filters(families=(family,))) for family in families]
    for kind, key, filters in views:
        try:
            found = data.fingerprint(url, **dict(filters))
        except TooManyRuns:
            continue
        done = warmed.views.get((kind, key))
        if done is not None and (done[0] == found or (kind == "family" and now - done[1] < REWARM_S)):
            continue
        # The page's own two calls (frontier_page.render), so their answers are stored under its keys;
        # computed in the background, one at a time, never ahead of a page that waits for its own.
        data.points(url, task, name, filters, "bits", (), lower_is_better(name), wait=False)
        data.analysis(url, task, name, **dict(filters), wait=False)
        warmed.views[(kind, key)] = (found, now)
        queued.append((kind, key))
    return queued


def keep_warm(url: str | None, every_s: float) -> None:
    """Warm the newest finished sweeps and their families every `every_s` seconds, for the life of the process."""
    newest = settings.dashboard_warm_sweeps()
    warmed = Warmed()
    while newest:
        try:
            queued = warm_newest(url, newest, warmed)
            if queued:
                log.info("computing the Frontier page of %s in the background", queued)
        except Exception:  # a database away for a while: the pages say so; try again next round
            log.warning("warming the newest sweeps' pages failed; trying again in %.0f s", every_s, exc_info=True)
        time.sleep(every_s)
