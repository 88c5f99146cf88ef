"""Every page in a real browser: `python -m kbit.dashboard` on 127.0.0.1, headless Chromium over
the DevTools protocol; the Frontier chart's marks are in the DOM, and every page's screenshot is
not blank. The screenshots are kept under artifacts/dashboard/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dashtest_browser import browsing, looks_blank, page_shot, shows
from PIL import Image

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
N_POINTS = 12  # 3 model sizes x k in {3, 4, 8, 16}: see test_dashboard_app.test_frontier_page_default_view


def frontier_drawn(probe: dict) -> bool:
    """The chart drawn and the page's tables there (they come after the chart: "running" can read
    false between two of the script's messages, so wait on what is asserted, not on the flag)."""
    charts = probe["charts"]
    if probe["running"] or not charts or probe["tables"] < 3:
        return False
    chart = charts[0]
    return chart["symbols"] >= N_POINTS if not chart["canvas"] else chart["drawn"] > 2000


def test_frontier_page_renders_in_chromium(seeded_db, tmp_path):
    url, _ = seeded_db
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browsing(url, ARTIFACTS / "server.log", tmp_path / "profile") as (base, browser):
        probe, shot = page_shot(browser, f"{base}/?page=frontier", frontier_drawn, ARTIFACTS / "frontier.png")

    chart = probe["charts"][0]
    assert probe["exceptions"] == 0
    assert chart["canvas"] or (chart["symbols"] == N_POINTS and chart["lines"] >= 5)  # 4 k lines + the frontier
    assert "Which precision wins at equal bits" in probe["text"] and "The paper's findings" in probe["text"]
    assert probe["title"] == "kbit"  # the browser tab, not "Streamlit"
    assert probe["tables"] >= 2 and probe["cut"] == 0  # both analysis tables whole, nothing scrolls inside
    assert "Scaling frontier" in probe["text"]

    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape[0] >= 600 and image.shape[1] >= 1000
    assert image.std() > 10, "the screenshot is (nearly) one colour"
    assert (image < 200).mean() > 0.02, "almost nothing is drawn on the screenshot"


# page -> (query, a heading the page shows once drawn, whether it draws a chart)
PAGES = {
    "scaling": ("?page=scaling", "Scaling", True),
    "queue": ("?page=queue", "Failed runs", True),
    "compare": ("?page=compare&group=sweep&items=1,2", "Side by side", True),
    "run": ("?page=run&run=1", "Metrics", False),
}


def test_every_other_page_renders_in_chromium(seeded_db, tmp_path):
    url, _ = seeded_db
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browsing(url, ARTIFACTS / "server-pages.log", tmp_path / "profile") as (base, browser):
        shots = {name: page_shot(browser, base + query, shows(heading, chart), ARTIFACTS / f"{name}.png")
                 for name, (query, heading, chart) in PAGES.items()}
    for name, (probe, shot) in shots.items():
        assert probe["exceptions"] == 0, name
        assert probe["title"] == "kbit", name
        assert probe["cut"] == 0, f"a table on the {name} page is cut and scrolls inside"
        assert "Traceback" not in probe["text"], name
        assert not looks_blank(shot), f"the {name} page looks blank"
