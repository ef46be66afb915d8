"""proxyd's reload on SIGHUP: the config file and every TLS file read again, open sessions untouched.

proxyd runs here from copies of its certificate files, so a test can
replace them the way an operator (or certbot) does before
``systemctl reload``; its sd_notify messages come to a socket of the test.
"""

import signal
import socket
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest
from websockets.exceptions import InvalidStatus

from lab.bootsector import BANNER, ENQ
from lab.notify import NotifySocket
from lab.pki import Pki
from lab.polling import within
from lab.proxyd import Proxyd
from lab.resolverd import Resolverd
from lab.wsstream import DEADLINE, WsStream, close_of

RELOADED_WORKER = "reloaded the configuration and certificates"


@pytest.fixture
def files(lab_run_dir: Path) -> Path:
    """A directory of its own for the files a test hands proxyd (short: it holds a socket's path)."""
    return Path(tempfile.mkdtemp(prefix="reload-", dir=lab_run_dir))


@pytest.fixture
def notify(files: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(files / "notify")
    yield receiver
    receiver.close()


def started(proxy: Proxyd, notify: NotifySocket) -> Proxyd:
    proxy.start(environment={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY=1", DEADLINE)
    return proxy


def reload(proxy: Proxyd, notify: NotifySocket, workers: int) -> None:
    """SIGHUP the master like ``systemctl reload``; back once it said READY=1 again and the workers followed."""
    assert proxy.process is not None
    before = len(notify.received)
    reloaded_before = proxy.log_text().count(RELOADED_WORKER)
    proxy.process.send_signal(signal.SIGHUP)
    notify.wait_for("READY=1", 30, after=before)
    assert "RELOADING=1" in notify.received[before:notify.received.index("READY=1", before)]
    if "reload failed" not in proxy.log_text():
        within(10, lambda: proxy.log_text().count(RELOADED_WORKER) == reloaded_before + workers)


def presented(proxy: Proxyd) -> bytes:
    """The certificate (DER) a new connection to the public port is shown."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as raw:
        with proxy.tls.wrap_socket(raw, server_hostname="localhost") as tls:
            certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def echo(stream: WsStream, marker: bytes) -> None:
    """The guest's banner for ENQ, then ``marker`` echoed: the session works both ways."""
    stream.sendall(ENQ)
    stream.read_until(BANNER)
    stream.sendall(marker)
    stream.read_until(marker)


def test_a_session_open_across_a_reload_goes_on_and_new_connections_get_the_new_certificate(
        lab_run_dir: Path, lab_pki: Pki, resolver: Resolverd, tokens, files: Path, notify: NotifySocket):
    cert, key, config = files / "public-cert.pem", files / "public-key.pem", files / "proxyd.conf"
    lab_pki.proxyd_server.copy_to(cert, key)
    config.write_text("[proxyd]\n")
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, "--config", str(config), workers=2)
    proxy.set_flag("--tls-cert", str(cert))
    proxy.set_flag("--tls-key", str(key))
    started(proxy, notify)
    try:
        workers = proxy.worker_pids()
        assert presented(proxy) == lab_pki.proxyd_server.der
        with pytest.raises(InvalidStatus):  # not yet on the allow-list
            proxy.open(tokens["serial0"], origin="https://console.example")
        with proxy.open(tokens["serial1"]) as ws:
            stream = WsStream(ws)
            echo(stream, b"before")
            renewed = lab_pki.issue("proxyd-renewed")
            renewed.copy_to(cert, key)
            config.write_text("[proxyd]\nallowed-origin = https://console.example\n")
            reload(proxy, notify, workers=2)
            echo(stream, b"after")  # the same session, through the same worker
            for _ in range(8):  # whichever worker accepts: every one presents the renewed certificate
                assert presented(proxy) == renewed.der
            with proxy.open(tokens["serial0"], origin="https://console.example") as fresh:  # config re-read
                echo(WsStream(fresh), b"fresh")
            echo(stream, b"still")
        assert proxy.worker_pids() == workers  # reloaded in place, not restarted
        assert "reload failed" not in proxy.log_text()
    finally:
        proxy.stop()


def test_a_certificate_that_does_not_load_keeps_the_running_one(
        lab_run_dir: Path, lab_pki: Pki, resolver: Resolverd, tokens, files: Path, notify: NotifySocket):
    cert, key = files / "public-cert.pem", files / "public-key.pem"
    lab_pki.proxyd_server.copy_to(cert, key)
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=2)
    proxy.set_flag("--tls-cert", str(cert))
    proxy.set_flag("--tls-key", str(key))
    started(proxy, notify)
    try:
        lab_pki.issue("proxyd-mismatched").copy_to(cert, files / "other-key.pem")  # its key is not the one read
        reload(proxy, notify, workers=2)
        errors: List[str] = [line for line in proxy.log_text().splitlines() if "reload failed" in line]
        assert len(errors) == 1 and "ERROR" in errors[0] and str(cert) in errors[0]
        assert presented(proxy) == lab_pki.proxyd_server.der
        assert proxy.healthy()
        with proxy.open(tokens["serial1"]) as ws:
            echo(WsStream(ws), b"kept")
    finally:
        proxy.stop()


def test_the_outbound_certificates_are_read_again(
        lab_run_dir: Path, lab_pki: Pki, resolver: Resolverd, tokens, files: Path, notify: NotifySocket):
    """Towards resolverd and towards QEMU: a certificate neither accepts at first, the right one after a reload."""
    resolver_cert, resolver_key = files / "resolver-cert.pem", files / "resolver-key.pem"
    qemu_cert, qemu_key = files / "qemu-cert.pem", files / "qemu-key.pem"
    lab_pki.foreign_client.copy_to(resolver_cert, resolver_key)
    lab_pki.foreign_client.copy_to(qemu_cert, qemu_key)
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=1)
    for flag, path in (("--resolver-cert", resolver_cert), ("--resolver-key", resolver_key),
                       ("--connect-cert", qemu_cert), ("--connect-key", qemu_key)):
        proxy.set_flag(flag, str(path))
    started(proxy, notify)
    try:
        with proxy.open(tokens["serial1"]) as ws:
            assert close_of(ws) == (1013, "the console directory is unavailable; try again later")
        lab_pki.proxyd_resolverd_client.copy_to(resolver_cert, resolver_key)
        reload(proxy, notify, workers=1)
        with proxy.open(tokens["serial1"]) as ws:
            assert close_of(ws) == (1011, "the console refused the connection")
        lab_pki.proxyd_qemu_client.copy_to(qemu_cert, qemu_key)
        reload(proxy, notify, workers=1)
        with proxy.open(tokens["serial1"]) as ws:
            echo(WsStream(ws), b"mtls")
    finally:
        proxy.stop()
