"""Running the packaging tools from tests."""

import subprocess
from pathlib import Path
from typing import List

import pytest


def run(argv: List[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {result.returncode}\n"
                    f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")
    return result


def query(rpm: Path, *options: str) -> str:
    """``rpm -qp OPTIONS RPM``: what a package file holds."""
    return run(["rpm", "-qp", *options, str(rpm)]).stdout
