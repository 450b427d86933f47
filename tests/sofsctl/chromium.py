"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol on a pipe, to
load a page behind HTTP Basic authentication, read its DOM and take a screenshot.

Why the DevTools protocol and not ``--dump-dom http://admin:PASSWORD@host/``: credentials in
a URL end up in the browser's command line, which every local user can read in
``/proc/PID/cmdline``. Here the browser is started with ``--remote-debugging-pipe`` (it reads
commands on fd 3 and answers on fd 4: no port is opened), the ``Fetch`` domain is asked to
hand over authentication challenges (``handleAuthRequests``), and the password is given only
to a challenge from the expected origin, scheme Basic, from the server (not a proxy), once
per request: what Puppeteer's ``page.authenticate()`` does. The password thus travels only
on the pipe, and a wrong password shows as the server's 401 page instead of a loop.

Each message on the pipe is one JSON object followed by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "chromium"
TIMEOUT_S = 120.0


def available() -> bool:
    return shutil.which(CHROMIUM) is not None


class BrowserError(Exception):
    """Chromium failed, answered with an error, or did not answer in time."""


@dataclass(frozen=True)
class Loaded:
    """A page as the browser shows it: its DOM serialised, the HTTP status of the document,
    and how many authentication challenges were answered."""

    html: str
    status: int
    challenges: int


class Chromium:
    """One headless browser with a throwaway profile; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 1600) -> None:
        self.width, self.height = width, height
        self._proc: subprocess.Popen | None = None
        self._profile = ""
        self._buf = b""
        self._next_id = 0
        self._session = ""

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="sofs-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # fds of at least 10 so that the shell's redirections below cannot clobber them
        r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                f"--window-size={self.width},{self.height}", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
                "about:blank"]
        try:
            self._proc = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', "bash", *argv],
                pass_fds=(r, w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(r)
            os.close(w)
        try:
            targets = self._call("Target.getTargets")["targetInfos"]
            page = next(t["targetId"] for t in targets if t["type"] == "page")
            self._session = self._call("Target.attachToTarget",
                                       {"targetId": page, "flatten": True})["sessionId"]
            self._call("Page.enable", session=True)
            self._call("Network.enable", session=True)
            self._call("Fetch.enable", {"handleAuthRequests": True}, session=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the browser (its whole process group) and remove its profile."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                self._send("Browser.close")
                proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # renderers and zygotes too
            except ProcessLookupError:
                pass
            proc.wait(30)
        for fd in (getattr(self, "_to_child", -1), getattr(self, "_from_child", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_child = self._from_child = -1
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)

    # --- pages ---------------------------------------------------------------------------

    def load(self, url: str, user: str | None = None, password: str | None = None) -> Loaded:
        """Open URL, answering a Basic challenge of URL's origin with USER and PASSWORD
        (once per request), and wait for its load event."""
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        nav = self._send("Page.navigate", {"url": url}, session=True)
        answered: set[str] = set()
        status, loaded, navigated = 0, False, False
        deadline = time.monotonic() + TIMEOUT_S
        while not (loaded and navigated):
            m = self._receive(deadline)
            method, params = m.get("method"), m.get("params", {})
            if m.get("id") == nav:
                if "error" in m or m["result"].get("errorText"):
                    raise BrowserError(f"navigating to {url}: {m.get('error') or m['result']}")
                navigated = True
            elif method == "Fetch.requestPaused":
                self._send("Fetch.continueRequest", {"requestId": params["requestId"]},
                           session=True)
            elif method == "Fetch.authRequired":
                ch, rid = params["authChallenge"], params["requestId"]
                ours = (ch.get("source") == "Server" and ch.get("origin") == origin
                        and ch.get("scheme", "").lower() == "basic")
                if ours and user is not None and rid not in answered:
                    answered.add(rid)
                    reply = {"response": "ProvideCredentials", "username": user,
                             "password": password or ""}
                else:
                    reply = {"response": "CancelAuth"}
                self._send("Fetch.continueWithAuth",
                           {"requestId": rid, "authChallengeResponse": reply}, session=True)
            elif method == "Network.responseReceived" and params.get("type") == "Document":
                status = int(params["response"]["status"])
            elif method == "Page.loadEventFired":
                loaded = True
        html = self.evaluate("document.documentElement.outerHTML")
        return Loaded(str(html), status, len(answered))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript EXPRESSION in the page."""
        result = self._call("Runtime.evaluate", {"expression": expression,
                                                 "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        """Save the whole page (not only the window) as a PNG at PATH; returns its bytes."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        shot = self._call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": self.width, "height": max(height, 1),
                     "scale": 1}}, session=True)
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data

    # --- the protocol --------------------------------------------------------------------

    def _send(self, method: str, params: dict | None = None, session: bool = False) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(0.0, left))
            if not ready:
                raise BrowserError(f"chromium did not answer in {TIMEOUT_S:.0f} s")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError("chromium closed its DevTools pipe (it exited)")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def _call(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        """Send a command and wait for its answer (events meanwhile are dropped, requests
        paused meanwhile are let through)."""
        ident = self._send(method, params, session)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            m = self._receive(deadline)
            if m.get("id") == ident:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error']}")
                return m.get("result", {})
            if m.get("method") == "Fetch.requestPaused":
                self._send("Fetch.continueRequest", {"requestId": m["params"]["requestId"]},
                           session=True)
            elif m.get("method") == "Fetch.authRequired":
                self._send("Fetch.continueWithAuth", {
                    "requestId": m["params"]["requestId"],
                    "authChallengeResponse": {"response": "CancelAuth"}}, session=True)
