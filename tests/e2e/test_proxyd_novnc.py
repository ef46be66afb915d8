"""noVNC (from the npm registry) in headless Chromium, through proxyd, to a lab guest's VNC with VeNCrypt x509.

The page is served from a local HTTP server whose origin proxyd allow-lists;
Chromium trusts proxyd's certificate by its public-key hash.  The browser is
driven over the DevTools protocol: wait for noVNC's ``connect`` event and a
painted canvas, take a screenshot (kept in the run directory), and check
that the canvas shows more than one colour (the banner on the blue VGA
screen).

Needs Debian's ``chromium`` and ``npm install @novnc/novnc`` under
``.venv/novnc`` (scripts/bootstrap); NOVNC_DIR and CHROMIUM override the paths.
"""

import base64
import functools
import hashlib
import http.server
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.sync.client import connect

from lab.ports import free_port
from lab.proxyd import Proxyd
from lab.resolverd import REPO

NOVNC = Path(os.environ.get("NOVNC_DIR", REPO / ".venv" / "novnc" / "node_modules" / "@novnc" / "novnc"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html>
<html><body style="margin:0">
<div id="screen" style="width:720px;height:400px"></div>
<script type="module">
import RFB from "./novnc/core/rfb.js";
window.vncState = "connecting";
const rfb = new RFB(document.getElementById("screen"), new URLSearchParams(location.search).get("url"));
rfb.addEventListener("connect", () => { window.vncState = "connected"; });
rfb.addEventListener("disconnect", (e) => { window.vncState = "disconnected clean=" + e.detail.clean; });
rfb.addEventListener("securityfailure", (e) => { window.vncState = "securityfailure " + e.detail.reason; });
</script>
</body></html>
"""

# Distinct colours among the canvas pixels, sampled on a grid.
CANVAS_COLOURS = """(() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || canvas.width < 2) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4 * 97) seen.add(data[i] + "," + data[i + 1] + "," + data[i + 2]);
  return seen.size;
})()"""

pytestmark = pytest.mark.skipif(not (NOVNC / "core" / "rfb.js").is_file() or CHROMIUM is None,
                                reason="needs Debian chromium and @novnc/novnc under .venv/novnc "
                                       "(scripts/bootstrap installs both)")


class DevTools:
    """Just enough of the Chrome DevTools protocol: evaluate JavaScript, take a screenshot."""

    def __init__(self, websocket_url: str) -> None:
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(connect(websocket_url, max_size=None, open_timeout=10))
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=20))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def web_root(tmp_path) -> Iterator[str]:
    """noVNC and the test page over plain HTTP on loopback; the origin as proxyd sees it."""
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "novnc").symlink_to(NOVNC)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def spki_hash(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def browser(tmp_path, lab_pki) -> Iterator[int]:
    """Headless Chromium trusting proxyd's key; its DevTools port."""
    port = free_port()
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'chromium'}",
         f"--ignore-certificate-errors-spki-list={spki_hash(lab_pki.proxyd_server.cert)}",
         "--window-size=800,500", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/json/version", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("chromium did not start")
                time.sleep(0.1)
        yield port
    finally:
        os.killpg(process.pid, 9)
        process.wait(10)


def test_novnc_in_chromium_shows_the_guest_screen(lab_run_dir, lab_pki, resolver, tokens, web_root, browser):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--allowed-origin", web_root, workers=1).start()
    try:
        target = f"wss://localhost:{proxy.port}/websockify?token={tokens['vnc']}"
        page_url = f"{web_root}/index.html?url={quote(target, safe='')}"
        page = requests.put(f"http://127.0.0.1:{browser}/json/new?{page_url}", timeout=10).json()
        tools = DevTools(page["webSocketDebuggerUrl"])
        try:
            deadline = time.monotonic() + 30
            state, colours = None, 0
            while time.monotonic() < deadline:
                state = tools.evaluate("window.vncState")
                colours = tools.evaluate(CANVAS_COLOURS) if state == "connected" else 0
                if colours > 1 or (state or "").startswith(("disconnected", "securityfailure")):
                    break
                time.sleep(0.2)
            shot = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
            (lab_run_dir / "novnc-screenshot.png").write_bytes(shot)
        finally:
            tools.close()
        assert state == "connected"
        assert colours > 1, "the canvas is blank"
        assert shot.startswith(b"\x89PNG") and len(shot) > 2000
        assert 'session open' in proxy.log_text() and "type=vnc" in proxy.log_text()
    finally:
        proxy.stop()
