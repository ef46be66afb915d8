"""resolveradm end to end: the command as a subprocess against the lab's private libvirtd and real guests.

Every check reads the result back through libvirt or virsh, never through
resolveradm alone: secret values with ``virsh secret-get-value``, metadata
with ``virsh metadata`` and virDomainGetMetadata on each definition.
"""

import base64
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import libvirt
import pytest
from lxml import etree

from lab.guests import Guest
from resolverd import metadata
from resolveradm import access, domains, tokens

REPO = Path(__file__).resolve().parents[2]
LIVE, CONFIG = libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG
LAB_CONSOLES = [("spice", 0), ("vnc", 0), ("serial", 0), ("serial", 1), ("console", 0)]


@pytest.fixture
def adm(lab_libvirtd):
    """Run resolveradm against the lab's libvirtd; an empty config file, so the host's is never read."""
    empty = os.devnull

    def run(*args: str, uri: Optional[str] = None, user: Optional[str] = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "resolveradm", "--config", empty, "-c", uri or lab_libvirtd.uri, *args]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                              user=user, env={**os.environ, "PYTHONPATH": str(REPO)})
    return run


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def ok_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(ok(result))


def one_line_error(result: subprocess.CompletedProcess, status: int, words: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("resolveradm: error: ") and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def secret_value(uri: str, secret_uuid: str) -> str:
    return base64.b64decode(virsh(uri, "secret-get-value", secret_uuid).strip()).decode()


def secret_uuids(conn: libvirt.virConnect) -> List[str]:
    return sorted(secret.UUIDString() for secret in conn.listAllSecrets(0))


def definition_metadata(guest: Guest, flags: int) -> Optional[str]:
    try:
        return guest.domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata.NAMESPACE, flags)
    except libvirt.libvirtError as exc:
        assert exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA
        return None


def console_keys(document: dict) -> List[tuple]:
    return [(console["type"], console["index"]) for console in document["consoles"]]


def tokens_by_console(document: dict) -> Dict[tuple, str]:
    return {(console["type"], console["index"]): console["token"] for console in document["consoles"]}


def assert_matches_libvirt(uri: str, document: dict) -> None:
    for console in document["consoles"]:
        assert secret_value(uri, console["secretUuid"]) == console["token"]
        assert len(console["token"]) >= 43 and set(console["token"]) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def write_metadata(guest: Guest, xml: str) -> None:
    flags = (LIVE if guest.domain.isActive() else 0) | (CONFIG if guest.domain.isPersistent() else 0)
    guest.domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, metadata.PREFIX, metadata.NAMESPACE, flags)


# -- the round trip on each kind of domain ----------------------------------------------------------

def test_round_trip_on_a_running_persistent_domain_leaves_no_secret_behind(adm, lab_libvirtd, lab_conn, make_guest):
    guest = make_guest(persistent=True, wait=False)
    before = secret_uuids(lab_conn)

    enabled = ok_json(adm("enable", guest.name, "--json"))
    assert enabled["changed"] is True and enabled["domain"]["uuid"] == guest.uuid
    assert enabled["domain"]["active"] is True and enabled["domain"]["persistent"] is True
    assert console_keys(enabled) == LAB_CONSOLES
    assert_matches_libvirt(lab_libvirtd.uri, enabled)
    assert len(set(tokens_by_console(enabled).values())) == len(LAB_CONSOLES)
    assert len(secret_uuids(lab_conn)) == len(before) + len(LAB_CONSOLES)

    # Both definitions carry it, and virsh shows exactly what was written.
    written = [(c["type"], c["secretUuid"], c["index"]) for c in enabled["consoles"]]
    for flags in (LIVE, CONFIG):
        assert [(c.type, c.secret_uuid, c.index) for c in metadata.parse(definition_metadata(guest, flags))] \
            == written
    shown_by_virsh = virsh(lab_libvirtd.uri, "metadata", guest.name, metadata.NAMESPACE)
    assert metadata.parse(shown_by_virsh) == metadata.parse(definition_metadata(guest, LIVE))
    assert f'type="spice" token="{enabled["consoles"][0]["secretUuid"]}" port="0" insecure="no"' in shown_by_virsh

    shown = ok_json(adm("show", guest.name, "--json"))
    assert shown["changed"] is False and tokens_by_console(shown) == tokens_by_console(enabled)

    rotated = ok_json(adm("rotate", guest.name, "--json"))
    assert console_keys(rotated) == LAB_CONSOLES
    assert_matches_libvirt(lab_libvirtd.uri, rotated)
    old, new = tokens_by_console(enabled), tokens_by_console(rotated)
    assert all(old[key] != new[key] for key in old)
    assert [c["secretUuid"] for c in rotated["consoles"]] == [c["secretUuid"] for c in enabled["consoles"]]

    disabled = ok_json(adm("disable", guest.name, "--json"))
    assert disabled["changed"] is True
    assert sorted(disabled["removedSecrets"]) == sorted(c["secretUuid"] for c in enabled["consoles"])
    assert secret_uuids(lab_conn) == before
    assert definition_metadata(guest, LIVE) is None and definition_metadata(guest, CONFIG) is None

    again = ok_json(adm("disable", guest.name, "--json"))
    assert again["changed"] is False and secret_uuids(lab_conn) == before


def test_a_shut_off_domain_gets_config_metadata_that_the_next_start_brings_live(adm, lab_libvirtd, lab_conn,
                                                                                 make_guest):
    guest = make_guest(running=False, persistent=True)
    before = secret_uuids(lab_conn)
    enabled = ok_json(adm("enable", guest.name, "--json"))
    assert enabled["domain"]["active"] is False and enabled["domain"]["state"] == "shut off"
    assert console_keys(enabled) == LAB_CONSOLES
    assert_matches_libvirt(lab_libvirtd.uri, enabled)
    assert definition_metadata(guest, CONFIG) is not None
    assert "console-proxy" in virsh(lab_libvirtd.uri, "dumpxml", "--inactive", guest.name)

    guest.start(wait=False)
    assert metadata.parse(definition_metadata(guest, LIVE)) == metadata.parse(definition_metadata(guest, CONFIG))
    assert tokens_by_console(ok_json(adm("show", guest.name, "--json"))) == tokens_by_console(enabled)

    ok_json(adm("disable", guest.name, "--json"))
    assert secret_uuids(lab_conn) == before
    assert definition_metadata(guest, LIVE) is None and definition_metadata(guest, CONFIG) is None


def test_a_transient_domain_gets_live_metadata_only(adm, lab_libvirtd, lab_conn, make_guest):
    guest = make_guest(wait=False)
    before = secret_uuids(lab_conn)
    enabled = ok_json(adm("enable", guest.uuid, "--json"))
    assert enabled["domain"]["persistent"] is False and enabled["domain"]["name"] == guest.name
    assert console_keys(enabled) == LAB_CONSOLES
    assert_matches_libvirt(lab_libvirtd.uri, enabled)
    assert metadata.parse(virsh(lab_libvirtd.uri, "metadata", guest.name, metadata.NAMESPACE)) == \
        metadata.parse(definition_metadata(guest, LIVE))

    rotated = ok_json(adm("rotate", str(guest.domain.ID()), "--json"))
    assert_matches_libvirt(lab_libvirtd.uri, rotated)
    ok(adm("disable", guest.name))
    assert secret_uuids(lab_conn) == before


# -- idempotence, --add, attributes, rotate's selection -------------------------------------------------

def test_enable_twice_changes_nothing_and_says_so(adm, lab_libvirtd, lab_conn, make_guest):
    guest = make_guest(running=False, persistent=True)
    first = ok_json(adm("enable", guest.name, "--json"))
    count = len(secret_uuids(lab_conn))
    written = definition_metadata(guest, CONFIG)

    second = adm("enable", guest.name)
    assert second.returncode == 0 and "already enabled; nothing changed" in second.stdout
    again = ok_json(adm("enable", guest.name, "--json", "--once"))
    assert again["changed"] is False and tokens_by_console(again) == tokens_by_console(first)
    assert len(secret_uuids(lab_conn)) == count and definition_metadata(guest, CONFIG) == written
    ok(adm("disable", guest.name))


def test_enable_add_picks_up_consoles_added_since_and_keeps_the_others(adm, lab_libvirtd, lab_conn, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc"})
    first = ok_json(adm("enable", guest.name, "--json"))
    assert console_keys(first) == [("vnc", 0)]
    definition = etree.fromstring(guest.xml(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    devices = definition.find("devices")
    devices.append(etree.fromstring("<serial type='pty'><target port='0'/></serial>"))
    devices.append(etree.fromstring("<graphics type='vnc' autoport='yes' listen='127.0.0.1'/>"))
    lab_conn.defineXML(etree.tostring(definition, encoding="unicode"))  # the metadata stays in it
    count = len(secret_uuids(lab_conn))

    added = ok_json(adm("enable", guest.name, "--add", "--once", "--json"))
    keys = console_keys(added)
    assert added["changed"] is True and keys[:2] == [("vnc", 0), ("vnc", 1)] and ("serial", 0) in keys
    assert added["consoles"][0]["token"] == first["consoles"][0]["token"]
    assert added["consoles"][0]["once"] is False and all(c["once"] for c in added["consoles"][1:])
    assert_matches_libvirt(lab_libvirtd.uri, added)
    assert len(secret_uuids(lab_conn)) == count + len(keys) - 1
    assert [(c.type, c.index) for c in metadata.parse(definition_metadata(guest, CONFIG))] == keys

    nothing_new = ok_json(adm("enable", guest.name, "--add", "--json"))
    assert nothing_new["changed"] is False and "no console was added" in nothing_new["message"]
    assert len(secret_uuids(lab_conn)) == count + len(keys) - 1
    ok(adm("disable", guest.name))


def test_enable_records_host_insecure_once_and_expiry(adm, lab_libvirtd, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc", "spice"})
    enabled = ok_json(adm("enable", guest.name, "--host", "hv1.example", "--insecure", "--once",
                          "--expires", "2h", "--json"))
    stored = metadata.parse(virsh(lab_libvirtd.uri, "metadata", guest.name, metadata.NAMESPACE, "--config"))
    assert {(c.host, c.insecure, c.once) for c in stored} == {("hv1.example", True, True)}
    expiry = stored[0].expires
    assert expiry is not None and enabled["consoles"][0]["expires"] == metadata.format_timestamp(expiry)
    assert 7100 < (expiry - guest_clock()).total_seconds() <= 7200
    ok(adm("disable", guest.name))


def guest_clock():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)


def test_rotate_one_console_and_change_its_attributes(adm, lab_libvirtd, make_guest):
    guest = make_guest(running=False, persistent=True)
    enabled = tokens_by_console(ok_json(adm("enable", guest.name, "--json")))
    rotated = ok_json(adm("rotate", guest.name, "--type", "serial", "--index", "1", "--once", "--expires",
                          "2030-01-01T00:00:00+01:00", "--json"))
    assert console_keys(rotated) == [("serial", 1)]
    assert rotated["consoles"][0]["once"] is True and rotated["consoles"][0]["expires"] == "2029-12-31T23:00:00Z"
    assert_matches_libvirt(lab_libvirtd.uri, rotated)
    now = tokens_by_console(ok_json(adm("show", guest.name, "--json")))
    assert now[("serial", 1)] != enabled[("serial", 1)]
    assert {key: value for key, value in now.items() if key != ("serial", 1)} == \
        {key: value for key, value in enabled.items() if key != ("serial", 1)}
    stored = {(c.type, c.index): c for c in metadata.parse(definition_metadata(guest, CONFIG))}
    assert stored[("serial", 1)].once and not stored[("serial", 0)].once

    never = ok_json(adm("rotate", guest.name, "--type", "serial", "--expires", "never", "--json"))
    assert [c["expires"] for c in never["consoles"]] == [None, None] and console_keys(never) == [
        ("serial", 0), ("serial", 1)]
    one_line_error(adm("rotate", guest.name, "--type", "vnc", "--index", "3"), 5, "has no enabled vnc 3 console")
    one_line_error(adm("rotate", guest.name, "--type", "rdp"), 2, "invalid choice: 'rdp'")
    ok(adm("disable", guest.name))


def test_proxy_url_gives_each_console_its_tenant_url(adm, lab_libvirtd, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"spice", "vnc"})
    enabled = ok_json(adm("--proxy-url", "https://console.example.com", "enable", guest.name, "--json"))
    spice, vnc = enabled["consoles"]
    assert spice["url"] == f"wss://console.example.com/websockify?token={spice['token']}"
    assert spice["remoteViewer"] == \
        f"remote-viewer 'spice://console.example.com?tls-port=443&password={spice['token']}'"
    assert vnc["remoteViewer"] is None
    text = adm("show", guest.name, "--proxy-url", "https://console.example.com:8443/").stdout
    assert f"url: wss://console.example.com:8443/websockify?token={vnc['token']}" in text
    assert f"token {vnc['token']}" in text
    ok(adm("disable", guest.name))


def test_list_shows_the_enabled_domains_only(adm, make_guest):
    enabled_guest = make_guest(running=False, persistent=True, consoles={"vnc"})
    other = make_guest(running=False, persistent=True, consoles={"vnc"})
    ok_json(adm("enable", enabled_guest.name, "--json"))
    listed = ok_json(adm("list", "--json"))["domains"]
    names = [entry["domain"]["name"] for entry in listed]
    assert enabled_guest.name in names and other.name not in names
    entry = listed[names.index(enabled_guest.name)]
    assert [(c["type"], c["index"]) for c in entry["consoles"]] == [("vnc", 0)] and entry["problem"] is None
    assert "token" not in entry["consoles"][0]
    text = adm("list").stdout
    assert enabled_guest.name in text and "vnc 0" in text and other.name not in text
    ok(adm("disable", enabled_guest.name))


# -- the anchor's metadata ------------------------------------------------------------------------

def test_metadata_written_by_libvirt_console_proxy_is_read_rotated_and_removed(adm, lab_libvirtd, lab_conn,
                                                                               make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc"})
    before = secret_uuids(lab_conn)
    secret = lab_conn.secretDefineXML(
        "<secret ephemeral='no' private='no'><description>Token for vnc console proxy domain "
        f"{guest.uuid}</description></secret>")
    secret.setValue(b"0f4e5b8c-7d6a-4b3e-9c2d-1a0b9c8d7e6f")
    write_metadata(guest, f'<consoles><console type="vnc" index="0" token="{secret.UUIDString()}" '
                          'insecure="no"/></consoles>')

    shown = ok_json(adm("show", guest.name, "--json"))
    assert shown["consoles"] == [{
        "type": "vnc", "index": 0, "token": "0f4e5b8c-7d6a-4b3e-9c2d-1a0b9c8d7e6f",
        "secretUuid": secret.UUIDString(), "host": None, "insecure": False, "once": False, "expires": None,
        "url": None, "remoteViewer": None}]
    assert ok_json(adm("enable", guest.name, "--json"))["changed"] is False

    rotated = ok_json(adm("rotate", guest.name, "--json"))
    assert_matches_libvirt(lab_libvirtd.uri, rotated)
    assert 'index="0"' in definition_metadata(guest, CONFIG)  # untouched: rotate only renews the value

    ok(adm("disable", guest.name))
    assert secret_uuids(lab_conn) == before


# -- never a half-done state -----------------------------------------------------------------------

def test_a_domain_that_vanishes_before_its_metadata_is_written_leaves_no_secret(lab_libvirtd, lab_conn, make_guest,
                                                                                monkeypatch):
    guest = make_guest(wait=False)
    before = secret_uuids(lab_conn)
    real_write = domains.write_metadata
    writes: List[Optional[str]] = []
    made_before_the_write: List[int] = []

    def destroy_then_write(domain, xml):
        writes.append(xml)
        if len(writes) == 1:
            made_before_the_write.append(len(secret_uuids(lab_conn)) - len(before))
            guest.destroy()  # a transient domain is gone for good: the write fails for real
        real_write(domain, xml)

    monkeypatch.setattr(domains, "write_metadata", destroy_then_write)
    with pytest.raises(libvirt.libvirtError) as caught:
        access.enable(lab_conn, lab_conn.lookupByUUIDString(guest.uuid), access.Grant())
    assert caught.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    assert made_before_the_write == [len(LAB_CONSOLES)]
    assert writes[0] is not None and writes[1:] == [None]  # then it tried to put "no element" back
    assert secret_uuids(lab_conn) == before


def test_a_metadata_write_that_fails_half_way_is_undone(lab_libvirtd, lab_conn, make_guest, monkeypatch):
    guest = make_guest(persistent=True, wait=False)
    before = secret_uuids(lab_conn)
    real_set = libvirt.virDomain.setMetadata
    calls: List[Optional[str]] = []

    def live_only_then_fail(self, kind, xml, key, uri, flags=0):
        calls.append(xml)
        if xml is not None and len(calls) == 1:
            real_set(self, kind, xml, key, uri, LIVE)  # the live definition changes, the config write "fails"
            raise libvirt.libvirtError("injected: cannot save the persistent definition")
        return real_set(self, kind, xml, key, uri, flags)

    monkeypatch.setattr(libvirt.virDomain, "setMetadata", live_only_then_fail)
    with pytest.raises(libvirt.libvirtError, match="injected"):
        access.enable(lab_conn, lab_conn.lookupByUUIDString(guest.uuid), access.Grant())
    assert len(calls) == 2 and calls[1] is None  # the previous state (no element) was put back
    assert definition_metadata(guest, LIVE) is None and definition_metadata(guest, CONFIG) is None
    assert secret_uuids(lab_conn) == before


def test_a_failure_while_making_secrets_undoes_the_ones_made(lab_libvirtd, lab_conn, make_guest, monkeypatch):
    guest = make_guest(running=False, persistent=True)
    before = secret_uuids(lab_conn)
    real_create = tokens.create

    def third_fails(connection, kind, index, domain_uuid):
        if len(secret_uuids(lab_conn)) - len(before) == 2:
            raise libvirt.libvirtError("injected: secret driver failure")
        return real_create(connection, kind, index, domain_uuid)

    monkeypatch.setattr(tokens, "create", third_fails)
    with pytest.raises(libvirt.libvirtError, match="injected"):
        access.enable(lab_conn, lab_conn.lookupByUUIDString(guest.uuid), access.Grant())
    assert secret_uuids(lab_conn) == before and definition_metadata(guest, CONFIG) is None


def test_a_rotation_that_fails_puts_the_old_tokens_back(adm, lab_libvirtd, lab_conn, make_guest, monkeypatch):
    guest = make_guest(running=False, persistent=True, consoles={"vnc", "spice"})
    enabled = tokens_by_console(ok_json(adm("enable", guest.name, "--json")))

    def fail(self, kind, xml, key, uri, flags=0):
        raise libvirt.libvirtError("injected")

    monkeypatch.setattr(libvirt.virDomain, "setMetadata", fail)
    with pytest.raises(libvirt.libvirtError):
        access.rotate(lab_conn, lab_conn.lookupByUUIDString(guest.uuid), once=True)
    monkeypatch.undo()
    assert tokens_by_console(ok_json(adm("show", guest.name, "--json"))) == enabled
    ok(adm("disable", guest.name))


def test_disable_also_removes_secrets_an_interrupted_enable_left_behind(adm, lab_libvirtd, lab_conn, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc"})
    before = secret_uuids(lab_conn)
    tokens.create(lab_conn, "vnc", 0, guest.uuid)  # as if enable had been killed before its metadata write
    assert len(secret_uuids(lab_conn)) == len(before) + 1
    disabled = ok_json(adm("disable", guest.name, "--json"))
    assert disabled["changed"] is True and len(disabled["removedSecrets"]) == 1
    assert secret_uuids(lab_conn) == before


# -- errors -----------------------------------------------------------------------------------------

def test_unknown_domain(adm, lab_libvirtd):
    for command in ("enable", "disable", "show", "rotate"):
        result = adm(command, "no-such-domain")
        one_line_error(result, 3, "no domain 'no-such-domain'")
        assert result.stdout == ""


def test_unreachable_libvirt(adm, tmp_path):
    result = adm("show", "demo", uri=f"qemu+unix:///session?socket={tmp_path}/nothing-here")
    one_line_error(result, 4, "cannot connect to libvirt at qemu+unix:///session")


def test_permission_denied_on_the_libvirt_socket(adm, lab_libvirtd):
    nobody = pwd.getpwnam("nobody")
    if os.geteuid() != 0 or nobody.pw_uid == lab_libvirtd.account.uid:
        pytest.skip("needs root, and a lab account that is not nobody")
    one_line_error(adm("list", user="nobody"), 4, "cannot connect to libvirt")


def test_a_domain_without_consoles(adm, lab_conn, make_guest):
    guest = make_guest(running=False, persistent=True, consoles=())
    before = secret_uuids(lab_conn)
    one_line_error(adm("enable", guest.name), 5, f"domain {guest.name} has no SPICE or VNC graphics")
    assert secret_uuids(lab_conn) == before and definition_metadata(guest, CONFIG) is None


def test_show_and_rotate_of_a_domain_not_enabled(adm, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc"})
    one_line_error(adm("show", guest.name), 6, f"console access to domain {guest.name} is not enabled")
    one_line_error(adm("rotate", guest.name), 6, "is not enabled")
    assert "not enabled; nothing to do" in adm("disable", guest.name).stdout


def test_a_vanished_secret_is_reported_and_disable_still_cleans_up(adm, lab_libvirtd, lab_conn, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc", "spice"})
    before = secret_uuids(lab_conn)
    enabled = ok_json(adm("enable", guest.name, "--json"))
    lab_conn.secretLookupByUUIDString(enabled["consoles"][0]["secretUuid"]).undefine()

    shown = adm("show", guest.name, "--json")
    one_line_error(shown, 7, "the secret of console(s) spice 0")
    document = json.loads(shown.stdout)
    assert document["consoles"][0]["token"] is None
    assert document["consoles"][1]["token"] == enabled["consoles"][1]["token"]
    one_line_error(adm("rotate", guest.name), 7, "no longer exists")
    assert secret_value(lab_libvirtd.uri, enabled["consoles"][1]["secretUuid"]) == enabled["consoles"][1]["token"]

    ok(adm("disable", guest.name))
    assert secret_uuids(lab_conn) == before


def test_malformed_metadata_is_reported_and_disable_removes_it(adm, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc"})
    write_metadata(guest, '<consoles><console type="rdp" token="x"/></consoles>')
    one_line_error(adm("show", guest.name), 7, "malformed (console #1: type 'rdp'")
    one_line_error(adm("enable", guest.name), 7, "'disable' removes it")
    listed = ok_json(adm("list", "--json"))["domains"]
    assert [entry["problem"] for entry in listed if entry["domain"]["uuid"] == guest.uuid] == [
        "malformed console metadata: console #1: type 'rdp' is not one of spice, vnc, serial, console"]
    disabled = adm("disable", guest.name)
    assert disabled.returncode == 0 and "its metadata was malformed" in disabled.stdout
    assert definition_metadata(guest, CONFIG) is None


def test_debug_logging_never_shows_a_token(adm, make_guest):
    guest = make_guest(running=False, persistent=True, consoles={"vnc", "spice"})
    enabled = adm("--log-level", "debug", "enable", guest.name, "--json")
    assert enabled.returncode == 0 and "secret" in enabled.stderr
    for console in json.loads(enabled.stdout)["consoles"]:
        assert console["token"] not in enabled.stderr
    rotated = adm("--log-level", "debug", "rotate", guest.name, "--json")
    for console in json.loads(rotated.stdout)["consoles"]:
        assert console["token"] not in rotated.stderr
    ok(adm("disable", guest.name))
