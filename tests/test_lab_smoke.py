"""Smoke tests of the end-to-end lab: real libvirtd, real QEMU, real TLS.

They prove what every later end-to-end test relies on, and fail when the
lab is broken (for instance when QEMU is handed the wrong CA).
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab import spice_link, vnc_vencrypt
from lab.bootsector import ENQ, serial_banner
from lab.guests import Guest, GuestFactory
from lab.pki import Pki
from lab.processes import processes_under
from lab.rundir import reap_stale_runs
from resolverd.tls import client_context

HOST = "127.0.0.1"
# DER SubjectPublicKeyInfo prefix of an RSA-1024 key (spice-protocol notes, 1.1).
RSA1024_SPKI_PREFIX = bytes.fromhex("30819f300d06092a864886f70d010101050003818d0030818902818100")


def tls_connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=HOST)
    except BaseException:
        raw.close()
        raise


def vnc_session(port: int, context: ssl.SSLContext) -> vnc_vencrypt.ServerInit:
    """The whole VeNCrypt X509None handshake up to ServerInit."""
    with socket.create_connection((HOST, port), timeout=10) as raw:
        vnc_vencrypt.negotiate(raw)
        with vnc_vencrypt.start_tls(raw, context) as tls:
            return vnc_vencrypt.finish(tls)


def token() -> bytes:
    return b"lab-" + secrets.token_hex(4).encode()


# -- the private libvirtd ----------------------------------------------------


def test_libvirtd_is_private(lab_libvirtd, lab_conn, lab_run_dir):
    assert lab_conn.getURI() == lab_libvirtd.uri
    assert lab_libvirtd.uri.startswith("qemu+unix:///session?socket=" + str(lab_run_dir))
    with open(f"/proc/{lab_libvirtd.pid}/environ", "rb") as handle:
        environ = dict(
            item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item
        )
    assert environ[b"XDG_RUNTIME_DIR"].decode().startswith(str(lab_run_dir))
    owner = pwd.getpwuid(os.stat(f"/proc/{lab_libvirtd.pid}").st_uid).pw_name
    if os.geteuid() == 0:
        assert owner == "vcp-lab"
    # Only what this run made: never the host's domains.
    assert all(dom.name().startswith("lab") for dom in lab_conn.listAllDomains())


# -- SPICE -------------------------------------------------------------------


def test_spice_link_on_tls_port(lab_guest: Guest, lab_pki: Pki):
    assert lab_guest.spice_tls_port
    with tls_connect(lab_guest.spice_tls_port, client_context(lab_pki.ca_cert)) as sock:
        reply = spice_link.link(sock, spice_link.CHANNEL_MAIN)
        assert (reply.major, reply.minor) == (2, 2)
        assert reply.error == spice_link.LINK_OK
        assert len(reply.pub_key) == 162
        assert reply.pub_key.startswith(RSA1024_SPKI_PREFIX)
        key = serialization.load_der_public_key(reply.pub_key)
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 1024
        assert reply.has_common_cap(spice_link.COMMON_CAP_AUTH_SELECTION)
        assert spice_link.authenticate(sock, reply, lab_guest.spice_password) == 0


def test_spice_ticket_is_checked(lab_guest: Guest, lab_pki: Pki):
    with tls_connect(lab_guest.spice_tls_port, client_context(lab_pki.ca_cert)) as sock:
        reply = spice_link.link(sock)
        result = spice_link.authenticate(sock, reply, "not-the-password")
    assert result == spice_link.LINK_PERMISSION_DENIED


def test_spice_tls_fails_against_foreign_ca(lab_guest: Guest, lab_pki: Pki):
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(lab_guest.spice_tls_port, client_context(lab_pki.foreign_ca_cert)).close()


# -- VNC ---------------------------------------------------------------------


def test_vnc_offers_vencrypt_x509none(lab_guest: Guest):
    with socket.create_connection((HOST, lab_guest.vnc_port), timeout=10) as sock:
        offer = vnc_vencrypt.negotiate(sock)
    assert offer.server_version == b"RFB 003.008\n"
    assert offer.security_types == [vnc_vencrypt.SECURITY_VENCRYPT]
    assert offer.vencrypt_version == (0, 2)
    assert offer.subtypes == [vnc_vencrypt.SUBTYPE_X509NONE]


def test_vnc_tls_with_proxyd_client_cert(lab_guest: Guest, lab_pki: Pki):
    init = vnc_session(lab_guest.vnc_port,
                       client_context(lab_pki.ca_cert, *lab_pki.proxyd_qemu_client.as_tuple))
    assert (init.width, init.height) == (720, 400)
    assert lab_guest.name in init.name


@pytest.mark.parametrize("client", ["foreign", "none"])
def test_vnc_refuses_untrusted_client(lab_guest: Guest, lab_pki: Pki, client: str):
    pair = lab_pki.foreign_client if client == "foreign" else None
    context = client_context(lab_pki.ca_cert, *(pair.as_tuple if pair else ()))
    # TLS 1.3: the refusal arrives after the client's Finished, so it may
    # surface at the handshake or at the first read.
    with pytest.raises((ssl.SSLError, EOFError, ConnectionResetError)):
        vnc_session(lab_guest.vnc_port, context)


# -- serial ------------------------------------------------------------------


def test_fresh_guest_prints_its_banners_unasked(make_guest: GuestFactory):
    guest = make_guest(consoles={"serial", "tls-serial"}, wait=False)
    with guest.console() as console:
        console.read_until(serial_banner(0), timeout=30)
    with guest.tls_serial() as serial:
        serial.read_until(serial_banner(1), timeout=30)


def test_pty_console_echo(lab_guest: Guest):
    # The shared guest may have stopped repeating its banner (some test
    # already typed on the port): ENQ asks for it.
    with lab_guest.console() as console:
        console.send(ENQ)
        console.read_until(serial_banner(0), timeout=10)
        probe = token() + b"\r\n"
        console.send(probe)
        console.read_until(probe, timeout=10)


def test_tls_serial_echo(lab_guest: Guest):
    with lab_guest.tls_serial() as serial:
        serial.send(ENQ)
        serial.read_until(serial_banner(1), timeout=10)
        probe = token() * 40  # 480 bytes, sent as one-byte TLS records
        serial.send(probe)
        serial.read_until(probe, timeout=10)


def test_tls_serial_refuses_foreign_client(lab_guest: Guest, lab_pki: Pki):
    context = client_context(lab_pki.ca_cert, *lab_pki.foreign_client.as_tuple)
    with pytest.raises((ssl.SSLError, EOFError, ConnectionResetError)):
        with lab_guest.tls_serial(context) as serial:
            serial.send(ENQ)
            serial.read_until(serial_banner(1), timeout=5)


# -- the checks fail when QEMU has the wrong PKI -----------------------------


def test_wrong_qemu_ca_breaks_every_check(make_guest: GuestFactory, lab_pki: Pki):
    foreign_server = lab_pki.issue("qemu-foreign", foreign=True)
    with lab_pki.qemu_identity(lab_pki.foreign_ca_cert, foreign_server):
        guest = make_guest(consoles={"spice", "vnc", "serial", "tls-serial"})
    proxyd = client_context(lab_pki.ca_cert, *lab_pki.proxyd_qemu_client.as_tuple)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(guest.spice_tls_port, client_context(lab_pki.ca_cert)).close()
    with pytest.raises(ssl.SSLCertVerificationError):
        vnc_session(guest.vnc_port, proxyd)
    with pytest.raises(ssl.SSLCertVerificationError):
        guest.tls_serial(proxyd).close()
    # Trusting the foreign CA gets past our check of QEMU, but QEMU (CA now
    # foreign) refuses proxyd's client certificate.
    mixed = client_context(lab_pki.foreign_ca_cert, *lab_pki.proxyd_qemu_client.as_tuple)
    with pytest.raises((ssl.SSLError, EOFError, ConnectionResetError)):
        vnc_session(guest.vnc_port, mixed)


# -- the guest factory -------------------------------------------------------


def test_persistent_guest_defined_shut_off_then_started(make_guest: GuestFactory):
    guest = make_guest(running=False, persistent=True, consoles={"serial"})
    dom = guest.domain
    assert dom.isPersistent() and not dom.isActive()
    assert guest.vnc_port is None and guest.spice_tls_port is None
    guest.start()
    assert guest.is_active() and guest.boot_seconds is not None
    guest.destroy()
    assert guest.domain.isPersistent() and not guest.domain.isActive()


def test_console_subset_and_transient(make_guest: GuestFactory, lab_conn):
    guest = make_guest(consoles={"vnc", "tls-serial"})
    root = ET.fromstring(guest.xml())
    kinds = {g.get("type") for g in root.findall("./devices/graphics")}
    assert kinds == {"vnc"}
    assert [s.get("type") for s in root.findall("./devices/serial")] == ["tcp"]
    # libvirt always mirrors the first serial as a console: here the TLS one.
    assert [c.get("type") for c in root.findall("./devices/console")] == ["tcp"]
    assert guest.vnc_port and guest.spice_tls_port is None
    assert not guest.domain.isPersistent()
    uuid = guest.uuid
    guest.destroy()
    with pytest.raises(libvirt.libvirtError):
        lab_conn.lookupByUUIDString(uuid)


def test_guests_survive_libvirtd_kill(lab_libvirtd, make_guest: GuestFactory):
    guest = make_guest(consoles={"serial"})
    old_pid = lab_libvirtd.pid
    lab_libvirtd.kill()
    assert not lab_libvirtd.running
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(lab_libvirtd.uri)
    lab_libvirtd.start()
    assert lab_libvirtd.pid != old_pid
    assert guest.is_active()
    with guest.console() as console:
        probe = token()
        console.send(probe)
        console.read_until(probe, timeout=10)


# -- teardown: nothing survives a failed test, Ctrl-C, SIGTERM or SIGKILL ----

INNER_TEST = """
import os, time

from lab.proxyd import Proxyd
from lab.resolverd import Resolverd
from lab.teardown import started

def test_inner(make_guest, lab_run_dir, lab_pki, lab_libvirtd):
    guest = make_guest(consoles={"serial", "vnc"})
    resolver = Resolverd(lab_run_dir, lab_pki, [lab_libvirtd.uri], log_level="info")
    with started(resolver.start, resolver.stop):
        proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()
        print("LAB", lab_run_dir, guest.name, flush=True)
        try:
            run_until_the_end()
        finally:
            proxy.stop()

def run_until_the_end():
    if os.environ["VCP_INNER_MODE"] == "fail":
        assert False, "deliberate failure"
    time.sleep(120)
"""


def _lab_processes(run_dir: Path) -> list[int]:
    return processes_under(run_dir)


def _wait_until_gone(run_dir: Path, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = _lab_processes(run_dir)
        if not left:
            return []
        time.sleep(0.1)
    return _lab_processes(run_dir)


def _hear_sigint() -> None:
    """A run started in the background (``cmd &`` in a script) inherits an ignored SIGINT, and Python then
    installs no KeyboardInterrupt for it: the inner run gets Ctrl-C's default, as at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("mode", ["fail", "sigint", "sigterm", "sigkill"])
def test_teardown_leaves_nothing_behind(tmp_path: Path, mode: str):
    """A whole pytest session with a lab guest, resolverd and proxyd, ended four ways."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    tests_dir = Path(__file__).resolve().parent
    env = dict(os.environ, VCP_INNER_MODE=mode, PYTHONPATH=str(tests_dir))
    env.pop("VCP_LAB_KEEP", None)
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "conftest",
         "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=_hear_sigint,
    )
    assert inner.stdout is not None
    output = b""
    run_dir = None
    try:
        deadline = time.monotonic() + 120
        while run_dir is None and time.monotonic() < deadline:
            line = inner.stdout.readline()
            if not line:
                break
            output += line
            if line.startswith(b"LAB "):
                run_dir = Path(line.split()[1].decode())
        assert run_dir is not None, output.decode(errors="replace")
        assert _lab_processes(run_dir), "the inner run started no lab process?"
        if mode != "fail":
            inner.send_signal({"sigint": signal.SIGINT, "sigterm": signal.SIGTERM,
                               "sigkill": signal.SIGKILL}[mode])
        try:
            output += inner.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            inner.kill()
            output += inner.communicate(timeout=10)[0]
            pytest.fail(f"the inner run did not end within 60 s of its {mode}:\n{output.decode(errors='replace')}")
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
    text = output.decode(errors="replace")
    if mode == "fail":
        assert inner.returncode == 1, text
        assert "deliberate failure" in text
    elif mode in ("sigint", "sigterm"):
        assert inner.returncode == 2, text  # pytest's "interrupted"
    assert _wait_until_gone(run_dir, 15) == [], text
    if mode == "sigkill":
        # No finalizer ran: the next lab start removes the directory.
        assert run_dir.exists()
        reap_stale_runs()
    assert not run_dir.exists(), text
