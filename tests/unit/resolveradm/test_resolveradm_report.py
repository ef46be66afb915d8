"""What resolveradm prints: the text for people and the JSON for programs, exactly."""

import json
from datetime import datetime, timezone

from resolverd.metadata import Console
from resolveradm.access import ConsoleAccess, Listed, Outcome
from resolveradm.domains import DomainFacts
from resolveradm.report import listing_json, listing_text, outcome_json, outcome_text
from resolveradm.urls import parse_proxy_url

DOMAIN = DomainFacts(name="demo", uuid="1b4e28ba-2fa1-11d2-883f-0016d3cca427", state="running", active=True,
                     persistent=True)
SPICE = Console(type="spice", secret_uuid="55806c7d-8e93-456f-829b-607d8c198367", index=0)
SERIAL = Console(type="serial", secret_uuid="bcbb4165-0a92-4a9c-a66d-9361ff4a45d6", index=1, host="hv1",
                 insecure=True, once=True, expires=datetime(2026, 1, 31, 18, 0, tzinfo=timezone.utc))
OUTCOME = Outcome(DOMAIN, True, "console access enabled",
                  (ConsoleAccess(SPICE, "tokenA"), ConsoleAccess(SERIAL, None)))
PROXY = parse_proxy_url("https://console.example.com")


def test_text_without_proxy_url():
    assert outcome_text(OUTCOME, None) == (
        "domain demo (1b4e28ba-2fa1-11d2-883f-0016d3cca427, running, persistent): console access enabled\n"
        "  spice 0: token tokenA\n"
        "    secret 55806c7d-8e93-456f-829b-607d8c198367, TLS to the hypervisor, no expiry\n"
        "  serial 1: token (missing: its secret is gone)\n"
        "    secret bcbb4165-0a92-4a9c-a66d-9361ff4a45d6, host hv1, insecure, one-time, "
        "expires 2026-01-31T18:00:00Z")


def test_text_with_proxy_url_adds_the_url_and_the_viewer_for_consoles_with_a_token():
    lines = outcome_text(OUTCOME, PROXY).splitlines()
    assert lines[3:5] == ["    url: wss://console.example.com/websockify?token=tokenA",
                          "    viewer: remote-viewer 'spice://console.example.com?tls-port=443&password=tokenA'"]
    assert lines[5] == "  serial 1: token (missing: its secret is gone)" and len(lines) == 7


def test_json():
    assert json.loads(outcome_json(OUTCOME, PROXY)) == {
        "domain": {"name": "demo", "uuid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "state": "running",
                   "active": True, "persistent": True},
        "changed": True, "message": "console access enabled", "removedSecrets": [],
        "consoles": [
            {"type": "spice", "index": 0, "token": "tokenA", "secretUuid": "55806c7d-8e93-456f-829b-607d8c198367",
             "host": None, "insecure": False, "once": False, "expires": None,
             "url": "wss://console.example.com/websockify?token=tokenA",
             "remoteViewer": "remote-viewer 'spice://console.example.com?tls-port=443&password=tokenA'"},
            {"type": "serial", "index": 1, "token": None, "secretUuid": "bcbb4165-0a92-4a9c-a66d-9361ff4a45d6",
             "host": "hv1", "insecure": True, "once": True, "expires": "2026-01-31T18:00:00Z",
             "url": None, "remoteViewer": None},
        ]}


def test_json_without_proxy_url_has_null_urls():
    consoles = json.loads(outcome_json(OUTCOME, None))["consoles"]
    assert [(c["url"], c["remoteViewer"]) for c in consoles] == [(None, None), (None, None)]


def test_disable_outcome():
    outcome = Outcome(DOMAIN, True, "console access disabled, 1 secret(s) removed",
                      removed_secrets=("55806c7d-8e93-456f-829b-607d8c198367",))
    assert json.loads(outcome_json(outcome, None))["removedSecrets"] == ["55806c7d-8e93-456f-829b-607d8c198367"]
    assert outcome_text(outcome, None) == (
        "domain demo (1b4e28ba-2fa1-11d2-883f-0016d3cca427, running, persistent): "
        "console access disabled, 1 secret(s) removed")


LISTED = [
    Listed(DOMAIN, (SPICE, SERIAL)),
    Listed(DomainFacts(name="a-much-longer-name", uuid="0b1b28ba-2fa1-11d2-883f-0016d3cca427", state="shut off",
                       active=False, persistent=True), (), "malformed console metadata: console #1 has no type"),
]


def test_listing_text_is_a_table():
    assert listing_text(LISTED) == (
        "NAME                UUID                                  STATE     CONSOLES\n"
        "demo                1b4e28ba-2fa1-11d2-883f-0016d3cca427  running   spice 0, serial 1\n"
        "a-much-longer-name  0b1b28ba-2fa1-11d2-883f-0016d3cca427  shut off  "
        "malformed console metadata: console #1 has no type")


def test_listing_text_when_nothing_is_enabled():
    assert listing_text([]) == "No domain has console access enabled."


def test_listing_json_has_no_tokens():
    document = json.loads(listing_json(LISTED))
    assert document["domains"][0]["consoles"][1] == {
        "type": "serial", "index": 1, "secretUuid": "bcbb4165-0a92-4a9c-a66d-9361ff4a45d6", "host": "hv1",
        "insecure": True, "once": True, "expires": "2026-01-31T18:00:00Z"}
    assert document["domains"][0]["problem"] is None
    assert document["domains"][1]["problem"].startswith("malformed") and document["domains"][1]["consoles"] == []
    assert json.loads(listing_json([])) == {"domains": []}
