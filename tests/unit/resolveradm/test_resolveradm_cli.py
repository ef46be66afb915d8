"""resolveradm's command line: flags, config file, one-line errors and exit statuses.

The libvirt side uses the test driver with a node file (a private, fresh
state per connection), so the errors are libvirt's own; the secrets driver
it lacks is what makes enable fail for real.
"""

import argparse
from pathlib import Path

import pytest

from resolverd import config
from resolverd.metadata import NAMESPACE
from resolveradm import cli, errors
from resolveradm.urls import ProxyUrl

NODE = f"""<node>
  <domain type='test'>
    <name>enabled</name>
    <uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>
    <memory>1024</memory><os><type>hvm</type></os>
    <metadata><lcp:consoles xmlns:lcp="{NAMESPACE}">
      <lcp:console type="vnc" token="55806c7d-8e93-456f-829b-607d8c198367" port="0"/>
    </lcp:consoles></metadata>
    <devices><graphics type='vnc' port='5900'/></devices>
  </domain>
  <domain type='test'>
    <name>broken</name>
    <memory>1024</memory><os><type>hvm</type></os>
    <metadata><lcp:consoles xmlns:lcp="{NAMESPACE}"><lcp:console type="rdp"/></lcp:consoles></metadata>
  </domain>
  <domain type='test'>
    <name>plain</name>
    <uuid>2b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>
    <memory>1024</memory><os><type>hvm</type></os>
    <devices><graphics type='vnc' port='5901'/><serial type='pty'/></devices>
  </domain>
  <domain type='test'>
    <name>bare</name>
    <memory>1024</memory><os><type>hvm</type></os>
  </domain>
</node>"""


@pytest.fixture
def uri(tmp_path: Path) -> str:
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    return f"test://{node}"


@pytest.fixture
def run(capsys):
    def run_main(*argv: str):
        status = cli.main(["--config", "/dev/null", *argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return run_main


def parse(*argv: str) -> argparse.Namespace:
    return config.parse(cli.build_parser(), ["--config", "/dev/null", *argv])


def assert_one_line(err: str, words: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("resolveradm: error: ") and words in lines[0], err


# -- flags and config ---------------------------------------------------------------------------

def test_defaults():
    args = parse("show", "demo")
    assert (args.connect, args.proxy_url, args.json, args.domain) == ("qemu:///system", None, False, "demo")


def test_connection_flags_work_before_and_after_the_subcommand():
    before = parse("-c", "qemu:///session", "--proxy-url", "https://h.example", "--json", "show", "demo")
    after = parse("show", "demo", "-c", "qemu:///session", "--proxy-url", "https://h.example", "--json")
    for args in (before, after):
        assert (args.connect, args.proxy_url, args.json) == (
            "qemu:///session", ProxyUrl(True, "h.example", 443, ""), True)
    assert parse("--connect", "test:///a", "list", "--connect", "test:///b").connect == "test:///b"


def test_enable_and_rotate_flags():
    args = parse("enable", "demo", "--add", "--insecure", "--host", "hv1.example", "--once", "--expires", "2h")
    assert (args.add, args.insecure, args.host, args.once) == (True, True, "hv1.example", True)
    assert args.expires.at is not None
    args = parse("rotate", "demo", "--type", "serial", "--index", "1", "--expires", "never")
    assert (args.console_type, args.index, args.expires.at, args.once) == ("serial", 1, None, False)
    assert parse("rotate", "demo").expires is None


def test_config_file_keys(tmp_path: Path):
    path = tmp_path / "resolveradm.conf"
    path.write_text("[resolveradm]\nconnect = qemu+ssh://hv1/system\nproxy-url = https://console.example.com:8443\n"
                    "json = yes\n")
    args = config.parse(cli.build_parser(), ["--config", str(path), "list"])
    assert (args.connect, args.proxy_url.port, args.json) == ("qemu+ssh://hv1/system", 8443, True)
    args = config.parse(cli.build_parser(), ["--config", str(path), "-c", "qemu:///system", "list"])
    assert args.connect == "qemu:///system"


@pytest.mark.parametrize("content, words", [
    ("[resolveradm]\nproxy-url = ftp://h.example\n", "bad value for 'proxy-url'"),
    ("[resolveradm]\nconect = qemu:///system\n", "unknown key 'conect'"),
    ("[resolveradm]\njson = maybe\n", "bad value for 'json'"),
    ("[proxyd]\nconnect = x\n", "unknown section [proxyd]"),
])
def test_bad_config_files_are_usage_errors_on_one_line(tmp_path: Path, capsys, content, words):
    path = tmp_path / "resolveradm.conf"
    path.write_text(content)
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config", str(path), "list"])
    assert caught.value.code == errors.USAGE
    assert_one_line(capsys.readouterr().err, words)


@pytest.mark.parametrize("argv, words", [
    ([], "the following arguments are required: COMMAND"),
    (["enabel", "demo"], "invalid choice: 'enabel'"),
    (["enable"], "the following arguments are required: DOMAIN"),
    (["show", "a", "b"], "unrecognized arguments: b"),
    (["enable", "demo", "--host", "a b"], "argument --host: 'a b' is not a host name"),
    (["enable", "demo", "--host", ""], "argument --host: '' is not a host name"),
    (["enable", "demo", "--expires", "soon"], "argument --expires: 'soon' is not a duration"),
    (["enable", "demo", "--expires", "2001-01-01T00:00:00Z"], "is in the past"),
    (["rotate", "demo", "--index", "x"], "argument --index: 'x' is not a console number"),
    (["rotate", "demo", "--index", "-1"], "argument --index"),
    (["rotate", "demo", "--type", "rdp"], "argument --type: invalid choice: 'rdp'"),
    (["--proxy-url", "https://h.example/?a=b", "list"], "a query or fragment"),
    (["list", "--proxy-url", "h.example"], "expected an https://"),
    (["--log-level", "loud", "list"], "argument --log-level: invalid choice"),
    (["disable", "demo", "--once"], "unrecognized arguments: --once"),
])
def test_usage_errors_are_one_line_with_status_2(capsys, argv, words):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config", "/dev/null", *argv])
    assert caught.value.code == errors.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line(captured.err, words)


def test_help_documents_every_exit_status_and_the_config_keys(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for status, meaning in errors.EXIT_STATUSES:
        assert f"  {status:<4} {meaning}" in text
    assert "connect, proxy-url, json, log-level" in text
    for command in ("enable", "disable", "show", "list", "rotate", "pki"):
        assert command in text


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("resolveradm ")


# -- against libvirt's test driver --------------------------------------------------------------

def test_list(run, uri):
    status, out, err = run("-c", uri, "list")
    assert (status, err) == (0, "")
    assert out.splitlines()[0].split() == ["NAME", "UUID", "STATE", "CONSOLES"]
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["broken", "enabled"]
    assert "type 'rdp' is not one of" in out


def test_unknown_domain_is_status_3(run, uri):
    for reference in ("nosuch", "99", "3b4e28ba-2fa1-11d2-883f-0016d3cca427"):
        status, out, err = run("-c", uri, "show", reference)
        assert (status, out) == (3, "")
        assert_one_line(err, f"no domain '{reference}' at test://")


def test_domains_are_found_by_uuid_and_id(run, uri):
    status, _, err = run("-c", uri, "show", "2b4e28ba-2fa1-11d2-883f-0016d3cca427")
    assert status == 6 and "domain plain is not enabled" in err
    status, _, err = run("-c", uri, "show", "3")  # ids follow the node file's order
    assert status == 6 and "domain plain is not enabled" in err


def test_unreachable_libvirt_is_status_4(run, tmp_path):
    status, out, err = run("-c", f"test://{tmp_path}/missing.xml", "list")
    assert (status, out) == (4, "")
    assert_one_line(err, "cannot connect to libvirt at test://")


def test_no_consoles_is_status_5(run, uri):
    status, out, err = run("-c", uri, "enable", "bare")
    assert (status, out) == (5, "")
    assert_one_line(err, "domain bare has no SPICE or VNC graphics, serial or console device")


def test_not_enabled_is_status_6(run, uri):
    for command in ("show", "rotate"):
        status, out, err = run("-c", uri, command, "plain")
        assert (status, out) == (6, "")
        assert_one_line(err, "console access to domain plain is not enabled")


def test_malformed_metadata_is_status_7(run, uri):
    for command in ("show", "rotate", "enable"):
        status, out, err = run("-c", uri, command, "broken")
        assert (status, out) == (7, "")
        assert_one_line(err, "the console metadata of domain broken is malformed (console #1: type 'rdp'")


def test_another_libvirt_failure_is_status_1_and_changes_nothing(run, uri):
    # The test driver has no secrets: enable fails at its first secret, show at its first look-up.
    status, out, err = run("-c", uri, "enable", "plain")
    assert (status, out) == (1, "")
    assert_one_line(err, "libvirt: this function is not supported by the connection driver: virSecretDefineXML")
    status, out, err = run("-c", uri, "show", "enabled")
    assert (status, out) == (1, "")
    assert_one_line(err, "virSecretLookupByUUID")


def test_pki_is_a_subcommand(run, tmp_path: Path):
    status, out, err = run("pki", "--dir", str(tmp_path / "pki"), "--proxy-name", "console.example.com")
    assert status == 0, err
    assert f"{tmp_path / 'pki' / 'ca-cert.pem'}: created" in out.splitlines()
    assert (tmp_path / "pki" / "proxyd-cert.pem").is_file()
