"""bench/run.py --smoke: the benchmark starts its lab, resolverd, proxyd (and websockify when installed), measures
every section against every column and prints its table.  Only that it works is checked, never a timing."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = ("1 stream client->backend (MB/s)", "1 stream backend->client (MB/s)", "server CPU s per GB relayed",
        "10 streams client->backend (MB/s)", "10 streams backend->client (MB/s)",
        "RTT 64 B p50, 1 session, back to back (us)", "RTT 64 B p99, 10 sessions, each every 100 ms (us)",
        "new sessions per second", "session set-up p99 (ms)", "server CPU per session (ms)",
        "PSS, 20 idle channels (MiB)", "per channel (KiB)")


@pytest.mark.timeout(180)
def test_the_benchmark_measures_everything_in_smoke_mode():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--smoke"], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    columns = lines[0].split()[1:-3]  # "measure proxyd [websockify] direct ratios / notes"
    assert columns[0] == "proxyd" and columns[-1] == "direct", lines[0]
    for row in ROWS:
        line = next((line for line in lines if line.strip().startswith(row)), None)
        assert line is not None, f"no row {row!r} in:\n{done.stdout}"
        values = line.strip()[len(row):].split()
        expected = len(columns) - (0 if "MB/s" in row or "RTT" in row or "sessions per" in row
                                   or "set-up" in row else 1)  # no server figures for direct
        assert all(re.fullmatch(r"\d+(\.\d+)?", value) for value in values[:expected]), line
    assert "failed" not in done.stdout
    assert re.search(r"load average [\d.]+ [\d.]+ [\d.]+ before", done.stdout)


VNC_ROWS = ("whole-screen raw updates backend->client (MB/s)", "RTT VNC ping p50, 1 session, back to back (us)",
            "RTT VNC ping p99, 10 sessions, each every 100 ms (us)", "new sessions per second",
            "session set-up p99 (ms)")


@pytest.mark.timeout(180)
def test_the_benchmark_measures_the_real_qemu_vnc_server_in_smoke_mode():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--backend", "qemu-vnc"],
                          cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].split()[1:3] == ["proxyd", "direct"], lines[0]
    for row in VNC_ROWS:
        line = next((line for line in lines if line.strip().startswith(row)), None)
        assert line is not None, f"no row {row!r} in:\n{done.stdout}"
        assert all(re.fullmatch(r"\d+(\.\d+)?", value) for value in line.strip()[len(row):].split()[:2]), line
    assert "failed" not in done.stdout
    assert "websockify is not measured against QEMU's VNC" in done.stdout
