"""Builds the RPMs once per session the way CI does on Debian, for the packaging tests.

The chain is the real one: the project's sdist (``python -m build --sdist``),
then ``rpmbuild -bb`` of rpm/virt-console-proxy.spec with
rpm/fedora-compat.macros standing in for Fedora's macro packages.  The
payload is unpacked into a scratch root next to this machine's own systemd
units, so ``systemd-analyze verify --root`` sees the packaged commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.packaging.commands import run

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "rpm" / "virt-console-proxy.spec"
COMPAT_MACROS = REPO / "rpm" / "fedora-compat.macros"
SYSUSERS = REPO / "systemd" / "virt-console-proxy.sysusers"
# What the spec takes from the sdist besides the Python packages.
SDIST_MUST_HOLD = ("systemd/virt-console-proxyd.service", "systemd/virt-console-resolverd.service",
                   "systemd/virt-console-proxy.tmpfiles", "systemd/50-virt-console-resolverd.rules",
                   "selinux/virt_console_proxy.te", "selinux/virt_console_proxy.if",
                   "selinux/virt_console_proxy.fc", "etc/proxyd.conf", "etc/resolverd.conf",
                   "tests/unit", "README.md")


@dataclass(frozen=True)
class Build:
    rpms: Dict[str, Path]  # "main" and "selinux"
    log: str
    root: Path  # the payload of both RPMs unpacked over a copy of this machine's systemd units

    @property
    def python_path(self) -> str:
        """PYTHONPATH for the packaged commands: the payload's packages, then the venv's for the RPM's
        dependencies (the distribution's python3-* packages on an installed system)."""
        (package,) = self.root.glob("usr/lib*/python3*/*-packages/resolverd")
        return f"{package.parent}:{sysconfig.get_path('purelib')}"


@pytest.fixture(scope="session")
def build() -> Iterator[Build]:
    # Not under pytest's private temporary directory: the daemons run from the
    # unpacked payload as unprivileged users (test_install_path.py).
    work = Path(tempfile.mkdtemp(prefix="vcp-packaging-"))
    work.chmod(0o755)
    try:
        yield _build(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(work: Path) -> Build:
    sdist = _sdist(work)
    top = work / "rpmbuild"
    (top / "SOURCES").mkdir(parents=True)
    shutil.copy(sdist, top / "SOURCES")
    shutil.copy(SYSUSERS, top / "SOURCES")
    (work / "tmp").mkdir()
    result = run(["rpmbuild", *_compat_macros(), "--define", f"_topdir {top}",
                  "--define", f"_tmppath {work / 'tmp'}", "-bb", str(SPEC)], timeout=1800)
    log = result.stdout + result.stderr
    rpms = {("selinux" if p.name.startswith("virt-console-proxy-selinux-") else "main"): p
            for p in (top / "RPMS" / "noarch").glob("*.rpm")}
    return Build(rpms=rpms, log=log, root=_unpack(work / "root", rpms.values()))


def _compat_macros() -> List[str]:
    """rpm/fedora-compat.macros where Fedora's macro packages are missing (Debian), nothing on Fedora."""
    if run(["rpm", "--eval", "%{?pyproject_wheel:fedora}"]).stdout.strip() == "fedora":
        return []
    return ["--load", str(COMPAT_MACROS), "--nodeps",
            "--define", f"_ci_python_deps {sysconfig.get_path('purelib')}"]


def _sdist(work: Path) -> Path:
    """The sdist built from a copy of this checkout's files (tracked and not ignored), as a release would be."""
    tree = work / "tree"
    listed = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(work / "dist"), str(tree)], timeout=900)
    (sdist,) = (work / "dist").glob("*.tar.gz")
    listing = run(["tar", "-tzf", str(sdist)]).stdout.splitlines()
    members = [name.split("/", 1)[1] for name in listing if "/" in name]
    missing = [m for m in SDIST_MUST_HOLD if not any(n == m or n.startswith(m + "/") for n in members)]
    if missing:
        pytest.fail(f"the sdist lacks {', '.join(missing)}: MANIFEST.in must graft them (the spec builds "
                    f"from the sdist alone)")
    return sdist


def _unpack(root: Path, rpms) -> Path:
    """Payloads over this machine's systemd units and kill(1), which the units name."""
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "usr" / "bin").mkdir()
    shutil.copy2(shutil.which("kill"), root / "usr" / "bin" / "kill")
    os.symlink("usr/bin", root / "bin")
    for rpm in rpms:
        with open(rpm, "rb") as package:
            archive = subprocess.run(["rpm2archive", "-"], stdin=package, capture_output=True, timeout=120)
        assert archive.returncode == 0, archive.stderr
        subprocess.run(["tar", "-xzf", "-", "-C", str(root)], input=archive.stdout, check=True, timeout=120)
    return root
