import pytest
from lxml import etree

from resolverd.targets import Target, Unroutable, join_host_port, target_for

HOST = "hv1.example.org"
BRIDGE = "resolver.example.org:7000"


def element(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def target(kind: str, xml: str, insecure: bool = False, host: str = None, bridge: str = BRIDGE) -> Target:
    return target_for(kind, element(xml), insecure, host, HOST, bridge)


SPICE = "<graphics type='spice' port='5900' tlsPort='5901' autoport='yes' listen='{listen}' passwd='pw'>" \
        "<listen type='address' address='{listen}'/></graphics>"


@pytest.mark.parametrize("listen, address", [
    ("127.0.0.1", "127.0.0.1:5901"),
    ("0.0.0.0", f"{HOST}:5901"),
    ("::", f"{HOST}:5901"),
    ("", f"{HOST}:5901"),
    ("fd00::5", "[fd00::5]:5901"),
])
def test_spice_uses_the_tls_port_and_a_reachable_host(listen, address):
    assert target("spice", SPICE.format(listen=listen)) == Target(
        type="spice", address=address, insecure=False, tls_tunnel=False, password="pw")


def test_spice_insecure_uses_the_plain_port():
    assert target("spice", SPICE.format(listen="10.0.0.1"), insecure=True).address == "10.0.0.1:5900"


def test_the_host_override_wins():
    assert target("spice", SPICE.format(listen="127.0.0.1"), host="public.example").address == "public.example:5901"


def test_listen_from_the_child_element_when_the_attribute_is_absent():
    xml = "<graphics type='vnc' port='5902'><listen type='network' address='192.0.2.7' network='default'/></graphics>"
    assert target("vnc", xml) == Target(type="vnc", address="192.0.2.7:5902", insecure=False, tls_tunnel=False)


def test_vnc_uses_the_port_and_carries_its_password():
    xml = "<graphics type='vnc' port='5903' autoport='yes' listen='127.0.0.1' passwd='secret'/>"
    assert target("vnc", xml).password == "secret" and target("vnc", xml).address == "127.0.0.1:5903"


@pytest.mark.parametrize("kind, xml, message", [
    ("spice", "<graphics type='spice' port='5900' tlsPort='-1' listen='127.0.0.1'/>", "no TLS port"),
    ("spice", "<graphics type='spice' autoport='yes'/>", "no TLS port"),
    ("vnc", "<graphics type='vnc' port='-1'/>", "no TCP port"),
    ("vnc", "<graphics type='vnc' port='x'/>", "no TCP port"),
    ("vnc", "<graphics type='vnc' port='70000'/>", "no TCP port"),
    ("vnc", "<graphics type='vnc' port='5900'><listen type='socket' socket='/run/vnc.sock'/></graphics>", "socket"),
    ("vnc", "<graphics type='vnc' port='5900'><listen type='none'/></graphics>", "none"),
    ("serial", "<serial type='file'><source path='/tmp/log'/></serial>", "type 'file'"),
    ("serial", "<serial type='unix'><source mode='bind' path='/tmp/s'/></serial>", "type 'unix'"),
    ("serial", "<serial type='tcp'><source mode='connect' host='h' service='4000'/></serial>", "connect mode"),
    ("serial", "<serial type='tcp'><source mode='bind' host='h'/></serial>", "no service port"),
    ("serial", "<serial type='tcp'/>", "connect mode"),
    ("console", "<console type='pty'><source path='/dev/pts/3'/></console>", "no device alias"),
    ("rdp", "<graphics type='rdp'/>", "unknown console type"),
])
def test_consoles_the_proxy_cannot_reach_say_why(kind, xml, message):
    with pytest.raises(Unroutable, match=message):
        target(kind, xml)


@pytest.mark.parametrize("tls, insecure, expected", [
    ("yes", True, False), ("no", False, True), (None, True, True), (None, False, False)])
def test_tcp_chardev_tls_follows_the_chardev_and_falls_back_to_the_console_flag(tls, insecure, expected):
    tls_attribute = f" tls='{tls}'" if tls else ""
    xml = f"<serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'{tls_attribute}/></serial>"
    assert target("serial", xml, insecure=insecure) == Target(
        type="serial", address=f"{HOST}:4555", insecure=expected, tls_tunnel=False)


def test_a_pty_console_goes_through_the_bridge():
    xml = "<serial type='pty'><source path='/dev/pts/4'/><target port='0'/><alias name='serial0'/></serial>"
    assert target("serial", xml, insecure=True) == Target(
        type="serial", address=BRIDGE, insecure=False, tls_tunnel=True, bridge_device="serial0")


def test_a_pty_console_without_a_bridge_is_unroutable():
    xml = "<serial type='pty'><alias name='serial0'/></serial>"
    with pytest.raises(Unroutable, match="--console-listen"):
        target("console", xml, bridge=None)


def test_join_host_port():
    assert join_host_port("::1", 1) == "[::1]:1"
    assert join_host_port("[::1]", 1) == "[::1]:1"
    assert join_host_port("h", 2) == "h:2"
