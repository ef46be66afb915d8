from datetime import datetime, timezone

from resolverd.inventory import read_domain
from resolverd.targets import Target

URI = "qemu:///system"
SECRETS = {
    "11111111-1111-4111-8111-111111111111": b"spice-token",
    "22222222-2222-4222-8222-222222222222": b"serial-token",
    "33333333-3333-4333-8333-333333333333": b"",
}
CONSOLES = """
    <lcp:consoles xmlns:lcp="http://libvirt.org/schemas/console-proxy/1.0">
      <lcp:console type="spice" token="11111111-1111-4111-8111-111111111111" port="0" insecure="no"
                   once="yes" expires="2030-01-01T00:00:00Z"/>
      <lcp:console type="serial" token="22222222-2222-4222-8222-222222222222" index="0"/>
      <lcp:console type="vnc" token="33333333-3333-4333-8333-333333333333" port="0"/>
      <lcp:console type="serial" token="44444444-4444-4444-8444-444444444444" port="1"/>
    </lcp:consoles>"""
DEVICES = """
    <serial type='pty'><source path='/dev/pts/3'/><target port='0'/><alias name='serial0'/></serial>
    <console type='pty' tty='/dev/pts/3'><target type='serial' port='0'/><alias name='serial0'/></console>
    <graphics type='spice' port='5900' tlsPort='5901' autoport='yes' listen='0.0.0.0' passwd='pw'/>"""


def domain_xml(running: bool, consoles: str = CONSOLES) -> str:
    identity = " id='7'" if running else ""
    return (f"<domain type='kvm'{identity}><name>demo</name><uuid>0b8a4c1e-0000-4000-8000-000000000001</uuid>"
            f"<metadata>{consoles}</metadata><devices>{DEVICES}</devices></domain>")


def read(xml: str, bridge="resolver.example:7000"):
    return read_domain(URI, xml, "hv1.example", bridge, SECRETS.get)


def test_a_running_domain_gives_a_target_per_readable_console():
    record = read(domain_xml(running=True))
    assert (record.uri, record.domain_uuid, record.domain_name, record.running) == (
        URI, "0b8a4c1e-0000-4000-8000-000000000001", "demo", True)
    spice, serial = record.consoles  # the vnc secret is empty and the 4th secret does not exist
    assert spice.token == b"spice-token" and spice.once
    assert spice.expires == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert spice.target == Target(type="spice", address="hv1.example:5901", insecure=False, tls_tunnel=False,
                                  password="pw")
    assert serial.target == Target(type="serial", address="resolver.example:7000", insecure=False,
                                   tls_tunnel=True, bridge_device="serial0")
    assert record.secret_uuids == frozenset(SECRETS) | {"44444444-4444-4444-8444-444444444444"}


def test_a_shut_off_domain_is_indexed_without_targets():
    record = read(domain_xml(running=False))
    assert not record.running
    assert [(c.console_type, c.running, c.target) for c in record.consoles] == [
        ("spice", False, None), ("serial", False, None)]


def test_unroutable_consoles_keep_the_reason():
    record = read(domain_xml(running=True), bridge=None)
    assert record.consoles[1].target is None
    assert "--console-listen" in record.consoles[1].unroutable


def test_a_console_naming_a_missing_device_is_unroutable():
    consoles = CONSOLES.replace('type="spice" token', 'type="vnc" token', 1)
    record = read(domain_xml(running=True, consoles=consoles))
    assert record.consoles[0].unroutable == "the domain has no vnc console number 0"


def test_domains_without_or_with_broken_metadata_are_not_indexed(caplog):
    assert read(domain_xml(running=True, consoles="")) is None
    broken = CONSOLES.replace('port="0" insecure="no"', 'port="zero"', 1)
    assert read(domain_xml(running=True, consoles=broken)) is None
    assert "console metadata ignored" in caplog.text
