"""Screenshots of every dashboard page on a database, for the docs:

    .venv/bin/python scripts/dashboard_screenshots.py --database-url sqlite:///$HOME/.kbit/kbit.db --out docs/img

Serves the dashboard and drives headless Chromium with the real-browser test's helpers
(tests/dashboard/dashtest_browser.py); writes dashboard-<page>.png. The demo has one team, so the
Compare page is shot on the two-team database the Compare tests seed (tests/dashboard/
dashtest_teams_seed.py: nlp and vision, one config better by a known amount, shared cached runs,
configs of their own), unless --compare-database-url names another.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "dashboard")]  # the helpers import tests.support

from dashtest_browser import browsing, page_shot, shows  # noqa: E402

PAGES = {
    "frontier": ("?page=frontier&metric=kbit_heldout/bits_per_byte", "Which precision wins at equal bits", True),
    "scaling": ("?page=scaling&metric=kbit_heldout/bits_per_byte&at=3&by=dtype", "Scaling", True),
    "queue": ("?page=queue", "Sweeps", True),
    "run": ("?page=run&run=2", "Metrics", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--out", default=str(REPO / "docs" / "img"))
    parser.add_argument("--compare-database-url", help="a database with two teams (default: the seeded one)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            browsing(args.database_url, Path(tmp) / "server.log", Path(tmp) / "profile") as (base, browser):
        for name, (query, heading, chart) in PAGES.items():
            _, path = page_shot(browser, base + "/" + query, shows(heading, chart), out / f"dashboard-{name}.png")
            print(f"wrote {path}")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.compare_database_url
        if url is None:
            from dashtest_teams_seed import seed_teams

            url = f"sqlite:///{Path(tmp) / 'teams.db'}"
            seed_teams(url)
        with browsing(url, Path(tmp) / "server.log", Path(tmp) / "profile") as (base, browser):
            _, path = page_shot(browser, base + "/?page=compare&group=team&items=nlp,vision", shows("Side by side", True),
                                out / "dashboard-compare.png")
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
