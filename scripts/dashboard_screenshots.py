"""Screenshots of every dashboard page on a database, for the docs:

    .venv/bin/python scripts/dashboard_screenshots.py --database-url sqlite:///$HOME/.kbit/kbit.db --out docs/img

Serves the dashboard and drives headless Chromium with the real-browser test's helpers
(tests/dashboard/dashtest_browser.py); writes dashboard-<page>.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dashboard"))

from dashtest_browser import browsing, page_shot, shows  # noqa: E402

PAGES = {
    "frontier": ("?page=frontier&metric=kbit_heldout/bits_per_byte", "Which precision wins at equal bits", True),
    "scaling": ("?page=scaling&metric=kbit_heldout/bits_per_byte&at=3&by=dtype", "Scaling", True),
    "queue": ("?page=queue", "Sweeps", True),
    "compare": ("?page=compare&metric=kbit_heldout/bits_per_byte", "Compare", True),
    "run": ("?page=run&run=2", "Metrics", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            browsing(args.database_url, Path(tmp) / "server.log", Path(tmp) / "profile") as (base, browser):
        for name, (query, heading, chart) in PAGES.items():
            _, path = page_shot(browser, base + "/" + query, shows(heading, chart), out / f"dashboard-{name}.png")
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
