"""resolverd's two-step one-time tokens: a look-up that leaves the token unclaimed, then one winning claim.

A plain GET (the anchor's shape) still claims as it answers; that case is in
test_resolverd.py.
"""

import concurrent.futures
from typing import Iterator

import pytest
import requests

from lab.consoles import console_spec, enable, secret_of
from lab.polling import within
from lab.resolverd import Resolverd
from lab.teardown import started


@pytest.fixture(scope="module")
def resolverd(lab_run_dir, lab_pki, lab_libvirtd) -> Iterator[Resolverd]:
    server = Resolverd(lab_run_dir, lab_pki, [lab_libvirtd.uri])
    with started(server.start, server.stop):
        yield server


def later(server: Resolverd, token: str) -> requests.Response:
    return server.session.get(f"{server.base}/consoleresolver/token/{token}?claim=later", timeout=10)


def claim(server: Resolverd, token: str, session: requests.Session) -> int:
    return session.post(f"{server.base}/consoleresolver/token/{token}/claim", timeout=30).status_code


def test_a_deferred_look_up_leaves_a_one_time_token_for_exactly_one_of_fifty_concurrent_claims(
        resolverd, lab_conn, make_guest, lab_run_dir, lab_pki, lab_libvirtd):
    guest = make_guest(wait=False)
    (token,) = enable(lab_conn, guest, console_spec("vnc", once=True))
    within(1, lambda: later(resolverd, token).status_code == 200)
    for _ in range(3):
        answer = later(resolverd, token).json()
        assert (answer["once"], answer["claimed"], answer["address"]) == (True, False, f"127.0.0.1:{guest.vnc_port}")
    assert secret_of(lab_conn, guest, 0).value() == token.encode()

    sessions = [resolverd.client() for _ in range(50)]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda s: claim(resolverd, token, s), sessions))
    assert sorted(codes) == [200] + [409] * 49
    assert later(resolverd, token).status_code == 404 and resolverd.status(token) == 404
    log = resolverd.log_text()
    assert "one-time token now consumed" in log and "one-time token already consumed" in log and token not in log
    assert resolverd.metric("resolverd_claims_total") >= 50

    # The claim is durable: libvirt no longer holds the token, so a fresh resolverd does not revive it.
    assert secret_of(lab_conn, guest, 0).value() != token.encode()
    fresh = Resolverd(lab_run_dir, lab_pki, [lab_libvirtd.uri])
    with started(fresh.start, fresh.stop):
        assert later(fresh, token).status_code == 404
        assert claim(fresh, token, fresh.session) == 404


def test_a_plain_get_still_claims_and_says_so(resolverd, lab_conn, make_guest):
    guest = make_guest(wait=False)
    (token,) = enable(lab_conn, guest, console_spec("spice", once=True))
    within(1, lambda: later(resolverd, token).status_code == 200)
    answer = resolverd.lookup(token).json()
    assert (answer["once"], answer["claimed"]) == (True, True)
    assert later(resolverd, token).status_code == 404
    assert claim(resolverd, token, resolverd.session) == 409


def test_claiming_a_reusable_token_changes_nothing_and_unknown_tokens_are_404(resolverd, lab_conn, make_guest):
    guest = make_guest(wait=False)
    (token,) = enable(lab_conn, guest, console_spec("vnc"))
    within(1, lambda: resolverd.status(token) == 200)
    assert claim(resolverd, token, resolverd.session) == 200
    assert claim(resolverd, token, resolverd.session) == 200
    assert "claimed" not in later(resolverd, token).json()
    assert resolverd.status(token) == 200
    assert claim(resolverd, token + "x", resolverd.session) == 404
    guest.destroy()
    within(1, lambda: resolverd.status(token) == 404)
    assert claim(resolverd, token, resolverd.session) == 404


def test_odd_claim_requests(resolverd, lab_conn, make_guest):
    guest = make_guest(wait=False)
    (token,) = enable(lab_conn, guest, console_spec("vnc", once=True))
    within(1, lambda: later(resolverd, token).status_code == 200)
    base = f"{resolverd.base}/consoleresolver/token/{token}"
    assert resolverd.session.get(base + "?claim=maybe", timeout=10).status_code == 400
    assert resolverd.session.get(base + "/claim", timeout=10).status_code == 404  # a GET never claims
    assert resolverd.session.put(base + "/claim", timeout=10).status_code == 405
    assert later(resolverd, token).status_code == 200
