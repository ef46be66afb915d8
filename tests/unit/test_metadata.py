"""The lcp metadata schema: byte-exact rendering, the anchor's format, bad input, the console walk."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolverd import metadata
from resolverd.metadata import Console, MetadataError

SPICE_SECRET = "55806c7d-8e93-456f-829b-607d8c198367"
VNC_SECRET = "bcbb4165-0a92-4a9c-a66d-9361ff4a45d6"
NS = metadata.NAMESPACE


def test_namespace_and_prefix_are_the_anchors():
    assert (metadata.NAMESPACE, metadata.PREFIX) == ("http://libvirt.org/schemas/console-proxy/1.0", "lcp")


def test_render_is_byte_exact_with_every_attribute_in_a_fixed_order():
    expiry = datetime(2026, 1, 31, 18, 0, 5, 999999, tzinfo=timezone.utc)
    text = metadata.render([
        Console(type="spice", secret_uuid=SPICE_SECRET, index=0),
        Console(type="vnc", secret_uuid=VNC_SECRET, index=2, host="hv1.example", insecure=True, once=True,
                expires=expiry),
    ])
    assert text == (
        '<consoles>\n'
        f'  <console type="spice" token="{SPICE_SECRET}" port="0" insecure="no"/>\n'
        f'  <console type="vnc" token="{VNC_SECRET}" port="2" host="hv1.example" insecure="yes" once="yes"'
        ' expires="2026-01-31T18:00:05Z"/>\n'
        '</consoles>')


def test_render_of_no_consoles_is_an_empty_element():
    assert metadata.render([]) == "<consoles/>"


def test_render_writes_expiry_in_utc():
    plus_two = timezone(timedelta(hours=2))
    text = metadata.render([Console("serial", SPICE_SECRET, 1, expires=datetime(2026, 3, 1, 1, 30, tzinfo=plus_two))])
    assert 'expires="2026-02-28T23:30:00Z"' in text


def test_parse_reads_what_get_metadata_returns():
    text = (f'<consoles>\n  <console type="spice" token="{SPICE_SECRET}" port="0" insecure="no"/>\n'
            f'  <console type="serial" token="{VNC_SECRET}" port="1" insecure="yes" once="yes" '
            'expires="2026-01-31T18:00:00Z"/>\n</consoles>')
    assert metadata.parse(text) == [
        Console(type="spice", secret_uuid=SPICE_SECRET, index=0),
        Console(type="serial", secret_uuid=VNC_SECRET, index=1, insecure=True, once=True,
                expires=datetime(2026, 1, 31, 18, 0, tzinfo=timezone.utc)),
    ]


def test_parse_reads_the_anchors_documented_format_with_index():
    text = (f'<lcp:consoles xmlns:lcp="{NS}">'
            f'<lcp:console type="vnc" index="0" token="{VNC_SECRET}" insecure="yes" host="192.168.122.2"/>'
            f'<lcp:console type="console" index="3" token="{SPICE_SECRET}" host="192.168.122.2"/>'
            '</lcp:consoles>')
    assert metadata.parse(text) == [
        Console(type="vnc", secret_uuid=VNC_SECRET, index=0, host="192.168.122.2", insecure=True),
        Console(type="console", secret_uuid=SPICE_SECRET, index=3, host="192.168.122.2"),
    ]


def test_parse_reads_what_the_anchors_tool_writes_and_render_keeps_it_readable_by_the_anchor():
    # xml.Marshal of its struct: token first, port always, insecure "no", no host.
    anchor = f'<consoles><console token="{SPICE_SECRET}" type="vnc" port="0" insecure="no"></console></consoles>'
    consoles = metadata.parse(anchor)
    assert consoles == [Console(type="vnc", secret_uuid=SPICE_SECRET, index=0)]
    assert metadata.render(consoles) == (
        f'<consoles>\n  <console type="vnc" token="{SPICE_SECRET}" port="0" insecure="no"/>\n</consoles>')


def test_a_console_without_port_or_index_is_number_zero():
    # The anchor's commit a67cfb8 shows exactly this.
    text = f'<consoles><console type="spice" token="{SPICE_SECRET}" insecure="yes"/></consoles>'
    assert metadata.parse(text)[0].index == 0


def test_port_and_index_that_agree_are_fine():
    text = f'<consoles><console type="vnc" token="{VNC_SECRET}" port="4" index="4"/></consoles>'
    assert metadata.parse(text)[0].index == 4


def test_unknown_attributes_are_ignored():
    text = f'<consoles><console type="vnc" token="{VNC_SECRET}" port="0" colour="blue"/></consoles>'
    assert metadata.parse(text) == [Console(type="vnc", secret_uuid=VNC_SECRET, index=0)]


def test_comments_are_ignored():
    text = f'<consoles><!-- by hand --><console type="vnc" token="{VNC_SECRET}"/></consoles>'
    assert len(metadata.parse(text)) == 1


def test_an_empty_element_has_no_consoles():
    assert metadata.parse("<consoles/>") == []


DOMAIN_WITH_METADATA = f"""<domain type='qemu' id='4'>
  <name>demo</name>
  <uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>
  <metadata>
    <other:thing xmlns:other="http://example.com/other"><other:console type="vnc"/></other:thing>
    <lcp:consoles xmlns:lcp="{NS}">
      <lcp:console type="vnc" token="{VNC_SECRET}" port="0" insecure="no" once="yes"/>
    </lcp:consoles>
  </metadata>
  <devices/>
</domain>"""


def test_parse_finds_the_element_in_a_domain_xml():
    assert metadata.parse(DOMAIN_WITH_METADATA) == [
        Console(type="vnc", secret_uuid=VNC_SECRET, index=0, once=True)]


def test_a_domain_without_lcp_metadata_has_no_consoles():
    assert metadata.parse("<domain><name>d</name><metadata><x xmlns='urn:x'/></metadata></domain>") == []
    assert metadata.parse("<domain><name>d</name></domain>") == []


@pytest.mark.parametrize("text, message", [
    ("", "malformed XML"),
    ("<consoles>", "malformed XML"),
    ("<consoles><console type='vnc' token='x'></consoles>", "malformed XML"),
    ("<other/>", "not <other>"),
    ("<lcp:consoles xmlns:lcp='urn:wrong'/>", "not <{urn:wrong}consoles>"),
    (f"<consoles><console token='{VNC_SECRET}'/></consoles>", "console #1 has no type attribute"),
    (f"<consoles><console type='rdp' token='{VNC_SECRET}'/></consoles>", "type 'rdp' is not one of"),
    (f"<consoles><console type='VNC' token='{VNC_SECRET}'/></consoles>", "type 'VNC' is not one of"),
    ("<consoles><console type='vnc'/></consoles>", "console #1 has no token attribute"),
    ("<consoles><console type='vnc' token='123456'/></consoles>", "token '123456' is not a secret UUID"),
    ("<consoles><console type='vnc' token=''/></consoles>", "is not a secret UUID"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}x'/></consoles>", "is not a secret UUID"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' port='-1'/></consoles>", "port '-1' is not a console"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' port='one'/></consoles>", "port 'one' is not"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' port=' 1'/></consoles>", "port ' 1' is not"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' index='1e3'/></consoles>", "index '1e3' is not"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' port='12345678901'/></consoles>", "is not a console"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' port='1' index='2'/></consoles>",
     "port 1 and index 2 disagree"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' insecure='true'/></consoles>",
     "insecure must be 'yes' or 'no', not 'true'"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' once='1'/></consoles>", "once must be 'yes' or 'no'"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' expires='tomorrow'/></consoles>",
     "console #1: expires: 'tomorrow' is not an RFC 3339 time"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' expires='2026-01-01T00:00:00'/></consoles>",
     "is not an RFC 3339 time"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}' expires='2026-02-30T00:00:00Z'/></consoles>",
     "is not a valid time"),
    (f"<consoles><console type='vnc' token='{VNC_SECRET}'/><console type='spice'/></consoles>",
     "console #2 has no token"),
    (f"<consoles><consol type='vnc' token='{VNC_SECRET}'/></consoles>", "unexpected element <consol>"),
    (f"<consoles xmlns:lcp='{NS}'><lcp:console type='vnc' token='{VNC_SECRET}'/></consoles>",
     "unexpected element <console>"),
    ("<!DOCTYPE consoles [<!ENTITY e 'x'>]><consoles>&e;</consoles>", "unexpected content"),
    (f"<domain><metadata><lcp:consoles xmlns:lcp='{NS}'><lcp:console/></lcp:consoles></metadata></domain>",
     "console #1 has no type"),
])
def test_malformed_metadata_is_refused_with_a_clear_message(text, message):
    with pytest.raises(MetadataError) as caught:
        metadata.parse(text)
    assert message in str(caught.value)


def test_parse_refuses_what_is_not_text():
    with pytest.raises(MetadataError, match="expected XML text"):
        metadata.parse(b"<consoles/>")  # type: ignore[arg-type]


@pytest.mark.parametrize("console, message", [
    (Console(type="rdp", secret_uuid=VNC_SECRET, index=0), "console type 'rdp'"),
    (Console(type="vnc", secret_uuid="not-a-uuid", index=0), "is not a secret UUID"),
    (Console(type="vnc", secret_uuid=VNC_SECRET, index=-1), "console number -1"),
    (Console(type="vnc", secret_uuid=VNC_SECRET, index=True), "console number True"),
    (Console(type="vnc", secret_uuid=VNC_SECRET, index="0"), "console number '0'"),  # type: ignore[arg-type]
    (Console(type="vnc", secret_uuid=VNC_SECRET, index=0, host="a b"), "host 'a b'"),
    (Console(type="vnc", secret_uuid=VNC_SECRET, index=0, host="h\x00"), "host 'h\\x00'"),
    (Console(type="vnc", secret_uuid=VNC_SECRET, index=0, expires=datetime(2026, 1, 1)), "needs a time zone"),
])
def test_render_refuses_what_it_could_not_read_back(console, message):
    with pytest.raises(MetadataError) as caught:
        metadata.render([console])
    assert message in str(caught.value)


@pytest.mark.parametrize("text, expected", [
    ("2026-01-31T18:00:00Z", datetime(2026, 1, 31, 18, 0, tzinfo=timezone.utc)),
    ("2026-01-31t18:00:00z", datetime(2026, 1, 31, 18, 0, tzinfo=timezone.utc)),
    ("2026-01-31 18:00:00+02:00", datetime(2026, 1, 31, 16, 0, tzinfo=timezone.utc)),
    ("2026-01-31T18:00:00-05:30", datetime(2026, 1, 31, 23, 30, tzinfo=timezone.utc)),
    ("2026-01-31T18:00:00.25Z", datetime(2026, 1, 31, 18, 0, 0, 250000, tzinfo=timezone.utc)),
    ("2026-01-31T18:00:00.123456789Z", datetime(2026, 1, 31, 18, 0, 0, 123456, tzinfo=timezone.utc)),
])
def test_parse_timestamp(text, expected):
    parsed = metadata.parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo == timezone.utc


@pytest.mark.parametrize("text", ["", "2026-01-31", "2026-01-31T18:00Z", "2026-1-31T18:00:00Z",
                                  "2026-01-31T18:00:00", "2026-01-31T18:00:00+0200", "2026-01-31T25:00:00Z",
                                  "2026-01-31T18:00:00+24:00", "2026-01-31T18:00:00Z trailing"])
def test_parse_timestamp_refuses(text):
    with pytest.raises(MetadataError):
        metadata.parse_timestamp(text)


def test_format_timestamp_needs_a_zone():
    with pytest.raises(MetadataError):
        metadata.format_timestamp(datetime(2026, 1, 1))


consoles_strategy = st.lists(st.builds(
    Console,
    type=st.sampled_from(metadata.CONSOLE_TYPES),
    secret_uuid=st.uuids().map(str),
    index=st.integers(min_value=0, max_value=999_999_999),
    host=st.one_of(st.none(), st.from_regex(r"[a-z0-9.:-]{1,30}", fullmatch=True)),
    insecure=st.booleans(),
    once=st.booleans(),
    expires=st.one_of(st.none(), st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1),
                                              timezones=st.just(timezone.utc)).map(
                                                  lambda moment: moment.replace(microsecond=0))),
), max_size=6)


@given(consoles_strategy)
def test_render_then_parse_gives_the_same_consoles(consoles):
    assert metadata.parse(metadata.render(consoles)) == consoles


@given(st.text(max_size=200))
def test_parse_of_any_text_gives_consoles_or_metadata_error(text):
    try:
        metadata.parse(text)
    except MetadataError:
        pass


# -- the console walk ---------------------------------------------------------------------------

DOMAIN = """<domain type='qemu' id='7'>
  <name>demo</name>
  <devices>
    <serial type='pty'><source path='/dev/pts/3'/><target port='0'/><alias name='serial0'/></serial>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'/>
    <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555' tls='yes'/><target port='1'/></serial>
    <console type='pty' tty='/dev/pts/3'><target type='serial' port='0'/><alias name='serial0'/></console>
    <graphics type='spice' port='5900' tlsPort='5902' autoport='yes'/>
    <graphics type='rdp' port='3389'/>
    <graphics type='spice' autoport='yes'/>
    <serial type='unix'><source mode='bind' path='/run/s.sock'/><target port='2'/></serial>
  </devices>
</domain>"""


def test_consoles_of_lists_spice_vnc_serial_console_each_numbered_in_document_order():
    found = [(kind, ordinal, device.tag, device.get("type")) for kind, ordinal, device in metadata.consoles_of(DOMAIN)]
    assert found == [
        ("spice", 0, "graphics", "spice"), ("spice", 1, "graphics", "spice"),
        ("vnc", 0, "graphics", "vnc"),
        ("serial", 0, "serial", "pty"), ("serial", 1, "serial", "tcp"), ("serial", 2, "serial", "unix"),
        ("console", 0, "console", "pty"),
    ]
    assert metadata.consoles_of(DOMAIN)[0][2].get("tlsPort") == "5902"


def test_console_devices_is_keyed_by_type_and_ordinal_and_takes_a_parsed_tree():
    from lxml import etree
    devices = metadata.console_devices(etree.fromstring(DOMAIN))
    assert sorted(devices) == [("console", 0), ("serial", 0), ("serial", 1), ("serial", 2), ("spice", 0),
                               ("spice", 1), ("vnc", 0)]
    assert devices[("serial", 1)].find("source").get("service") == "4555"


def test_a_domain_without_devices_has_no_consoles():
    assert metadata.consoles_of("<domain><name>d</name></domain>") == []


@pytest.mark.parametrize("text, message", [("<domain>", "malformed XML"), ("<consoles/>", "expected a domain XML")])
def test_consoles_of_refuses_what_is_not_a_domain(text, message):
    with pytest.raises(MetadataError, match=message):
        metadata.consoles_of(text)
