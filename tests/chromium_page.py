"""Test helper: a page opened in headless Chromium, driven over the DevTools protocol.

The tests of the HTML pages (test_html_report.py, test_compare.py) assert on the DOM a
real browser builds, after real input: mouse clicks at an element's place and typed text
go through Chromium's input pipeline, as a user's would. Only the standard library: the
browser speaks the protocol on a pipe (``--remote-debugging-pipe``: JSON messages ended
by a NUL byte, read on its fd 3, written on its fd 4).

The network is off three ways: host names resolve to nothing, every request goes to a
proxy where nothing listens, and the page's network is emulated as offline. Every request
the page attempts is recorded (``Network.requestWillBeSent``) so that a test can assert
that it asked for nothing but files.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import unquote, urlparse

import pytest

__all__ = ["Page", "chromium", "open_page"]

#: How long one protocol exchange may take before the test fails (a loaded machine included).
TIMEOUT = 60.0

# The child puts the pipe's ends at fds 3 and 4, where Chromium looks for them, and then
# becomes Chromium. (subprocess keeps passed fds at their own numbers; a shell cannot name
# descriptors above 9, which a test process may well hold.)
_TRAMPOLINE = """
import fcntl, os, sys
reading, writing = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
os.dup2(reading, 3)
os.dup2(writing, 4)
os.execv(sys.argv[3], sys.argv[3:])
"""

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
    "--window-size=1280,900",
    # No network: no name resolves, and any connection goes to a port where nothing listens.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)


def chromium() -> str:
    """Debian's Chromium: CI installs it (.ci/run); elsewhere its absence skips the test."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium (.ci/run) to open the HTML pages and flame graphs")
        pytest.skip("Debian's chromium is not installed")
    return found


class _Pipe:
    """The protocol's messages over the two pipes: commands with their answers, and events."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._to = to_browser
        self._from = from_browser
        self._buffer = b""
        self._last_id = 0
        self.events: List[Dict[str, Any]] = []

    def send(
        self, method: str, params: Optional[Dict[str, Any]] = None, session: Optional[str] = None
    ) -> Any:
        """Send a command and return its result; an error answer fails the test."""
        self._last_id += 1
        message: Dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to, data) :]
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._last_id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, method: str) -> Dict[str, Any]:
        """The first event named ``method`` not yet waited for (read from the pipe if need be)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method and not event.get("_seen"):
                    event["_seen"] = True
                    return self.events[index]
            self.events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> Dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._from], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(f"Chromium did not answer within {TIMEOUT:.0f} s")
            chunk = os.read(self._from, 1 << 16)
            if not chunk:
                raise AssertionError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: Dict[str, Any] = json.loads(message)
        return parsed


class Page:
    """One tab with the page loaded: evaluate JavaScript, click, type, and see its requests."""

    def __init__(self, pipe: _Pipe, session: str) -> None:
        self._pipe = pipe
        self._session = session

    def _send(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        return self._pipe.send(method, params, self._session)

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (JSON-serializable); a thrown error fails."""
        answer = self._send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def click(self, selector: str) -> None:
        """A left click with the mouse at the middle of the first element ``selector`` finds."""
        x, y = self.evaluate(
            f"""(() => {{
                const element = document.querySelector({json.dumps(selector)});
                element.scrollIntoView({{block: "center", inline: "center"}});
                const box = element.getBoundingClientRect();
                return [box.x + box.width / 2, box.y + box.height / 2];
            }})()"""
        )
        self._send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self._send(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            )

    def type(self, selector: str, text: str) -> None:
        """Click into the field ``selector`` finds and type ``text`` there."""
        self.click(selector)
        self._send("Input.insertText", {"text": text})

    def requested(self) -> List[str]:
        """Every URL the page asked for, in order, since it started loading."""
        return [
            event["params"]["request"]["url"]
            for event in self._pipe.events
            if event.get("method") == "Network.requestWillBeSent" and event.get("sessionId") == self._session
        ]

    def errors(self) -> List[str]:
        """Errors the page's scripts threw."""
        return [
            str(event["params"]["exceptionDetails"])
            for event in self._pipe.events
            if event.get("method") == "Runtime.exceptionThrown" and event.get("sessionId") == self._session
        ]


def file_of(url: str) -> Path:
    """The file a ``file:`` URL names."""
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(unquote(parsed.path))


@contextmanager
def open_page(path: Path, profile: Path) -> Iterator[Page]:
    """``path`` loaded in headless Chromium (its profile in ``profile``), the network off."""
    browser = chromium()
    to_reading, to_writing = os.pipe()
    from_reading, from_writing = os.pipe()
    command = [
        sys.executable,
        "-c",
        _TRAMPOLINE,
        str(to_reading),
        str(from_writing),
        browser,
        *_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    process = subprocess.Popen(
        command,
        pass_fds=(to_reading, from_writing),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(to_reading)
    os.close(from_writing)
    try:
        pipe = _Pipe(to_writing, from_reading)
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            pipe.send(f"{domain}.enable", {}, session)
        offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
        pipe.send("Network.emulateNetworkConditions", offline, session)
        pipe.send("Page.navigate", {"url": path.as_uri()}, session)
        pipe.wait_for("Page.loadEventFired")
        yield Page(pipe, session)
        with suppress(AssertionError):  # it may close the pipe before it answers
            pipe.send("Browser.close")
    finally:
        os.close(to_writing)
        os.close(from_reading)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
