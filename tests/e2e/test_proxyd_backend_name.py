"""The name proxyd checks on QEMU's certificates: the console's address by default, or one fixed name.

Hypervisors often carry certificates in their host name while resolverd
answers with an IP address; --connect-server-name covers that case.  The
guest here gets a certificate for ``hv1.console.test`` only (no IP).
"""

from lab.bootsector import BANNER, ENQ
from lab.consoles import tokens_of
from lab.polling import within
from lab.proxyd import Proxyd
from lab.rfb_tenant import open_session
from lab.wsstream import WsStream, close_of

HOST_NAME = "hv1.console.test"
NOT_TRUSTED = (1011, "the console's certificate is not trusted")


def test_a_fixed_name_is_checked_instead_of_the_address(lab_run_dir, lab_pki, resolver, guests, lab_libvirtd):
    named = lab_pki.issue("qemu-by-host-name", sans=(HOST_NAME,))
    with lab_pki.qemu_identity(lab_pki.ca_cert, named):
        guest = guests(consoles={"tls-serial", "vnc"}, wait=False)  # its banner check would verify the IP
    tokens = tokens_of(lab_libvirtd.connection(), guest)
    within(10, lambda: resolver.lookup(tokens["vnc"]).status_code == 200)

    by_address = Proxyd(lab_run_dir, lab_pki, resolver, workers=1).start()
    try:
        for console in ("serial0", "vnc"):
            with by_address.open(tokens[console]) as ws:
                assert close_of(ws) == NOT_TRUSTED
        assert "certificate of 127.0.0.1 rejected" in by_address.log_text()
    finally:
        by_address.stop()

    by_name = Proxyd(lab_run_dir, lab_pki, resolver, "--connect-server-name", HOST_NAME, workers=1).start()
    try:
        with by_name.open(tokens["serial0"]) as ws:
            stream = WsStream(ws)
            stream.sendall(ENQ)
            stream.read_until(BANNER)
        with by_name.open(tokens["vnc"]) as ws:
            assert open_session(WsStream(ws)).width == 720  # ServerInit from QEMU, through VeNCrypt
    finally:
        by_name.stop()
