"""Helpers for the real-browser test: serve the dashboard with `python -m kbit.dashboard`, drive
headless Chromium over the DevTools protocol (a websocket; no Selenium), read the DOM and take a
screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

from websockets.sync.client import connect as ws_connect

from tests.support.net import free_port, wait_until

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1400,1100",
]


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("KBIT_NO_SYSTEM_INSTALL"):
        import pytest

        pytest.skip("Chromium is missing and KBIT_NO_SYSTEM_INSTALL is set: no real-browser test on this machine")
    if not found:
        raise RuntimeError("Chromium is missing: run scripts/test.sh (it installs Debian's chromium) "
                           "or `apt-get install -y chromium`")
    return found


def _get(url: str, timeout: float = 2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


@contextmanager
def dashboard_server(database_url: str, log_path: Path):
    """`python -m kbit.dashboard` on 127.0.0.1:<free port>; yields its base URL."""
    port = free_port()
    env = {**os.environ, "KBIT_DASHBOARD_TTL": "5"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kbit.dashboard", "--host", "127.0.0.1", "--port", str(port),
             "--database-url", database_url],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _get(base + "/_stcore/health") == "ok", 60,
                   what="the dashboard did not answer /_stcore/health")
        assert proc.poll() is None, f"the dashboard exited: {log_path.read_text()[-2000:]}"
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path):
        self.proc = subprocess.Popen(
            [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        port = wait_until(lambda: port_file.exists() and port_file.read_text().split("\n")[0], 30,
                          what="Chromium did not open its DevTools port")
        targets = wait_until(lambda: _get(f"http://127.0.0.1:{port}/json"), 30, what="no DevTools targets")
        page = next(t for t in json.loads(targets) if t["type"] == "page")
        self.stack = ExitStack()
        self.ws = self.stack.enter_context(ws_connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30))
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@contextmanager
def browsing(database_url: str, log_path: Path, profile: Path):
    """The dashboard served on `database_url` and a headless Chromium: yields (base URL, browser)."""
    with dashboard_server(database_url, log_path) as base:
        browser = Browser(profile)
        try:
            yield base, browser
        finally:
            browser.close()


def shows(heading: str, chart: bool):
    """A `ready` check: the page is drawn, shows `heading` and (when `chart`) a chart with marks."""
    def ready(probe: dict) -> bool:
        drawn = not chart or any(c["symbols"] or c["drawn"] or c["lines"] or c["rects"] for c in probe["charts"])
        return not probe["running"] and heading in probe["text"] and drawn
    return ready


def looks_blank(path: Path) -> bool:
    """A screenshot (nearly) one colour, or with almost nothing darker than light grey on it."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    return not (image.std() > 10 and (image < 200).mean() > 0.01)


def page_shot(browser: Browser, url: str, ready, path: Path, tries: int = 3):
    """Open `url` until `ready(probe)` and a screenshot of it to `path` is not blank; returns (the
    page probe, path). The first load after the server starts can stay blank: load again. A page
    the DOM calls ready can still be fading in (sidebar and chart transitions, slower on a loaded
    machine: a run page shot blank while two suites ran at once): the picture is taken again until
    it shows the page."""
    probe, blank_shots = None, 0
    for _ in range(tries):
        browser.open(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = browser.evaluate(CHART_PROBE)
            if ready(probe):
                time.sleep(1.5)  # let the sidebar's and the chart's transitions finish before the picture
                if not looks_blank(browser.screenshot(path)):
                    return probe, path
                blank_shots += 1
            time.sleep(0.5)
    raise AssertionError(f"{url} never got ready ({blank_shots} blank screenshots of it): {probe}")


# What the page shows of its charts: per vega-embed element, the marks Vega drew as SVG (circles
# are .mark-symbol.role-mark paths, lines .mark-line ones; legends have other roles) or, when it
# renders to a canvas, how many of the canvas's pixels are painted (not transparent, not white).
CHART_PROBE = """
(() => {
  const out = [];
  for (const embed of document.querySelectorAll('.vega-embed')) {
    const canvas = embed.querySelector('canvas');
    const symbols = embed.querySelectorAll('svg .mark-symbol.role-mark path').length;
    const lines = embed.querySelectorAll('svg .mark-line.role-mark path').length;
    const rects = embed.querySelectorAll('svg .mark-rect.role-mark path').length;
    let drawn = 0, width = 0, height = 0;
    if (canvas) {
      width = canvas.width; height = canvas.height;
      const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
      for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i + 3] > 0 && (pixels[i] < 240 || pixels[i + 1] < 240 || pixels[i + 2] < 240)) drawn++;
      }
    }
    out.push({canvas: !!canvas, width, height, drawn, symbols, lines, rects});
  }
  // Tables cut by the page, so that they scroll inside: a dataframe wider than its box, or an
  // st.table (meant to be shown whole) wider or taller than its box.
  const overflows = (e, tall) => e.scrollWidth > e.clientWidth + 1 || (tall && e.scrollHeight > e.clientHeight + 1);
  const cut = [...document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')].filter(e => overflows(e, false))
    .concat([...document.querySelectorAll('[data-testid="stTable"], [data-testid="stTable"] > div')].filter(e => overflows(e, true)));
  return {charts: out, exceptions: document.querySelectorAll('[data-testid="stException"]').length,
          title: document.title, cut: cut.length,
          tables: document.querySelectorAll('[data-testid="stDataFrame"], [data-testid="stTable"]').length,
          running: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
          text: document.body ? document.body.innerText.slice(0, 20000) : ''};
})()
"""
