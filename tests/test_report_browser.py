"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package; CI
installs it) renders report.html, every figure loads and is painted, every section is there.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so no client library is needed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from prunekit.bench.report import build_report, write_reports
from tests.test_bench_reports import FIGURES, all_rows

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 60.0
IMAGES_JS = """
Promise.all([...document.images].map(i => i.decode().then(() => true, () => false))).then(decoded =>
  [...document.images].map((img, k) => {
    img.scrollIntoView();
    const box = img.getBoundingClientRect();
    return {src: img.getAttribute('src'), naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
            decoded: decoded[k], x: box.x + window.scrollX, y: box.y + window.scrollY,
            width: box.width, height: box.height};
  }))
"""
DOM_JS = """({
  sections: [...document.querySelectorAll('h2')].map(h => h.textContent),
  tables: document.querySelectorAll('table').length,
  captions: [...document.querySelectorAll('figcaption')].map(c => c.textContent),
  raises: [...document.querySelectorAll('td.v-raises-accuracy')].map(td => getComputedStyle(td).color),
})"""


def chromium() -> str:
    """The Chromium binary; the test fails (never skips) without one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "this test needs headless Chromium: apt-get install -y chromium (.ci/run installs it)"
    )


def _high(fd: int) -> int:
    """``fd`` moved to a number above 9, so that mapping the pipe ends onto 3 and 4 in the
    browser cannot overwrite one of them with the other."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevTools:
    """A headless Chromium and its DevTools protocol over a pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser, self._write = (_high(fd) for fd in os.pipe())
        self._read, from_browser = (_high(fd) for fd in os.pipe())
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={profile}",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            "--mute-audio", "about:blank",
        ]  # fmt: skip
        # the browser reads commands on fd 3 and writes replies on fd 4 (a Python trampoline
        # puts the pipe ends there: sh cannot name descriptors above 9)
        trampoline = f"import os, sys; os.dup2({to_browser}, 3); os.dup2({from_browser}, 4); os.execv(sys.argv[1], sys.argv[1:])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, binary, *args],
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not any(
            e.get("method") == event and e.get("sessionId") == session for e in self.events
        ):
            self.events.append(self._message(deadline))

    def evaluate(self, expression: str, session: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


def _colours(png: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    """report.html opened in headless Chromium: every <img> decodes with naturalWidth > 0 and
    is laid out at a visible size; a screenshot of each figure's box is painted (many colours,
    not a blank or a broken-image icon); the sections, tables and figure captions are in the
    DOM, and "raises accuracy" cells are coloured."""
    out = tmp_path / "report"
    write_reports(build_report(all_rows()), out, formats=("html",))
    browser = DevTools(chromium(), tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        browser.call("Page.enable", session=session)
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        browser.call("Page.navigate", {"url": (out / "report.html").as_uri()}, session)
        browser.wait_for("Page.loadEventFired", session)
        images = browser.evaluate(IMAGES_JS, session)
        dom = browser.evaluate(DOM_JS, session)
        shots = {}
        for img in images:
            clip = {k: img[k] for k in ("x", "y", "width", "height")}
            shot = browser.call(
                "Page.captureScreenshot",
                {"format": "png", "clip": {**clip, "scale": 1}, "captureBeyondViewport": True},
                session,
            )
            shots[img["src"]] = base64.b64decode(shot["data"])
        page = base64.b64decode(
            browser.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
        )
    finally:
        browser.close()
    (tmp_path / "page.png").write_bytes(page)

    assert sorted(img["src"] for img in images) == sorted(f"{name}.svg" for name in FIGURES)
    for img in images:
        assert img["decoded"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["width"] > 300 and img["height"] > 150, img
        assert _colours(shots[img["src"]]) > 50, img["src"]  # a drawn figure, not an empty box
    assert _colours(page) > 20
    assert dom["sections"][:4] == [
        "Protocol",
        "Software versions",
        "How to read this report",
        "Leaderboard",
    ]
    assert "Figures" in dom["sections"] and dom["tables"] >= 8
    assert len(dom["captions"]) == len(FIGURES) and all(
        c.startswith("Figure ") for c in dom["captions"]
    )
    assert dom["raises"] == ["rgb(9, 105, 218)", "rgb(9, 105, 218)"]  # #0969da, in both tables
