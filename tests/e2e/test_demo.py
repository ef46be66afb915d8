"""scripts/demo's program (README's first command, after its install step), run as a user would.

In check mode it brings everything up, checks every console through proxyd
with the URLs it prints, and tears down; in its normal mode SIGTERM ends it.
Either way nothing it started may outlive it.  Both listen on loopback
ports of their own, never on the demo's public default.
"""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import List

from lab.processes import processes_under
from lab.resolverd import REPO

DEMO = [sys.executable, "-m", "lab.demo", "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"]
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
BRING_UP = 240


def run_dir_of(output: str) -> Path:
    return Path(re.search(r"^Logs and files: (\S+)", output, re.MULTILINE).group(1))


def assert_gone(run_dir: Path) -> None:
    assert not run_dir.exists()
    assert processes_under(run_dir) == []


def test_check_mode_verifies_prints_and_cleans_up():
    result = subprocess.run(DEMO + ["--check"], cwd=REPO, env=ENVIRONMENT, capture_output=True, text=True,
                            timeout=BRING_UP)
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    vnc_token = re.search(r"^  vnc +(\S+)$", out, re.MULTILINE).group(1)
    assert re.search(r"https://127\.0\.0\.1:\d+/vnc\.html\?host=127\.0\.0\.1&port=\d+&encrypt=1"
                     rf"&path=websockify%3Ftoken%3D{re.escape(vnc_token)}$", out, re.MULTILINE)
    assert re.search(r"scripts/demo serial --ca \S+/ca-cert\.pem 'wss://127\.0\.0\.1:\d+/websockify\?token=", out)
    assert "Enabled with: resolveradm -c 'qemu+unix:///session?socket=" in out
    assert_gone(run_dir_of(out))


def test_sigterm_while_ready_tears_everything_down():
    demo = subprocess.Popen(DEMO, cwd=REPO, env=ENVIRONMENT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    watchdog = threading.Timer(BRING_UP, demo.kill)
    watchdog.start()
    try:
        lines: List[str] = []
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                break
        assert lines and lines[-1].startswith("ready:"), "".join(lines)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0
        assert_gone(run_dir_of("".join(lines)))
    finally:
        watchdog.cancel()
        if demo.poll() is None:
            demo.kill()
            demo.wait()
