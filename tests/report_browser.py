"""Open a page in real headless Chromium and inspect it over the DevTools protocol (test helper, stdlib only).

``--remote-debugging-pipe`` makes Chromium read protocol commands from fd 3 and write replies and events to
fd 4, each message NUL-terminated JSON: no port, no websocket, nothing left listening.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


@dataclass
class PageReport:
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    checks: dict[str, Any] = field(default_factory=dict)  # result of the page expression


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)


def inspect_page(chromium: str, page: Path, expression: str, screenshot: Path) -> PageReport:
    """Load ``page``, collect console errors and exceptions, evaluate ``expression`` (must return JSON), and
    write a full-page PNG screenshot."""
    # Our end of each pipe stays with us; Chromium's ends become its fds 3 (commands in) and 4 (replies out).
    cmd_read, cmd_write = os.pipe()
    out_read, out_write = os.pipe()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        def wire_fds() -> None:
            # Copy both ends clear of 3 and 4 first, so neither dup2 overwrites the other's source.
            high_in, high_out = os.dup(cmd_read), os.dup(out_write)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        # close_fds=False: only inheritable fds cross exec, i.e. the dup2 copies at 3 and 4 (Python's own fds
        # are non-inheritable), whereas pass_fds would close 3 and 4 again after preexec_fn runs.
        proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                 "about:blank"], close_fds=False, preexec_fn=wire_fds,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_read)
        os.close(out_write)
        pipe = _Pipe(proc, cmd_write, out_read)
        report = PageReport()
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                      session=session)
            pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired")
            result = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                    "awaitPromise": True}, session=session)
            report.checks = result["result"].get("value", {})
            metrics = pipe.send("Page.getLayoutMetrics", session=session)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
            shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": clip}, session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            for event in pipe.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    text = " ".join(str(a.get("value", a)) for a in params["args"])
                    report.errors.append(f"console: {text}")
                elif method == "Runtime.exceptionThrown":
                    details = params["exceptionDetails"]
                    report.errors.append(f"exception: {details.get('text', '')} "
                                         f"{details.get('exception', {}).get('description', '')}".strip())
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    report.errors.append("log: " + params["entry"].get("text", ""))
            try:
                pipe.send("Browser.close", timeout=10)
            except (RuntimeError, TimeoutError):
                pass
        finally:
            os.close(cmd_write)
            os.close(out_read)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return report
