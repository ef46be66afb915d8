import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from resolverd.index import DomainRecord, IndexedConsole, Outcome, TokenIndex
from resolverd.targets import Target

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
URI = "qemu:///session"
TARGET = Target(type="vnc", address="h:5900", insecure=False, tls_tunnel=False)


def console(token: str = "tok-A", domain: str = "d1", **changes) -> IndexedConsole:
    base = IndexedConsole(token=token.encode(), uri=URI, domain_uuid=domain, domain_name=f"name-{domain}",
                          console_type="vnc", index=0, secret_uuid=f"secret-{token}", once=False, expires=None,
                          running=True, target=TARGET)
    return replace(base, **changes)


def record(*consoles: IndexedConsole, domain: str = "d1", uri: str = URI, running: bool = True,
           secrets=None) -> DomainRecord:
    return DomainRecord(uri=uri, domain_uuid=domain, domain_name=f"name-{domain}", running=running,
                        secret_uuids=frozenset(secrets if secrets is not None else [c.secret_uuid for c in consoles]),
                        consoles=tuple(consoles))


def test_a_running_console_resolves_and_others_do_not():
    index = TokenIndex()
    index.replace_domain(record(console()))
    found = index.lookup("tok-A", NOW)
    assert found.outcome is Outcome.OK and found.console.target == TARGET
    assert index.lookup("tok-B", NOW).outcome is Outcome.UNKNOWN
    assert index.lookup("tok-", NOW).outcome is Outcome.UNKNOWN
    assert index.lookup("", NOW).outcome is Outcome.UNKNOWN


def test_odd_presented_tokens_are_unknown_not_errors():
    index = TokenIndex()
    index.replace_domain(record(console()))
    for token in ["tök-A", "tok-A\udcff", "tok-A/../x", "x" * 10000, "\x00"]:
        assert index.lookup(token, NOW).outcome is Outcome.UNKNOWN


def test_a_stopped_domain_does_not_resolve_and_a_restart_resolves_the_same_token_again():
    index = TokenIndex()
    index.replace_domain(record(console()))
    index.mark_stopped(URI, "d1")
    assert index.lookup("tok-A", NOW).outcome is Outcome.NOT_RUNNING
    index.replace_domain(record(console()))
    assert index.lookup("tok-A", NOW).outcome is Outcome.OK


def test_mark_stopped_of_an_unknown_domain_is_harmless():
    index = TokenIndex()
    index.mark_stopped(URI, "nope")
    assert index.counts()["tokens"] == 0


def test_expiry_is_checked_at_lookup_time():
    index = TokenIndex()
    index.replace_domain(record(console(expires=NOW + timedelta(seconds=1))))
    assert index.lookup("tok-A", NOW).outcome is Outcome.OK
    assert index.lookup("tok-A", NOW + timedelta(seconds=1)).outcome is Outcome.EXPIRED


def test_a_console_without_target_is_unroutable():
    index = TokenIndex()
    index.replace_domain(record(console(target=None, unroutable="no TLS port")))
    found = index.lookup("tok-A", NOW)
    assert found.outcome is Outcome.UNROUTABLE and found.console.unroutable == "no TLS port"


def test_a_one_time_token_is_claimed_once_and_then_reported_consumed():
    index = TokenIndex()
    index.replace_domain(record(console(once=True), console("tok-B")))
    assert index.lookup("tok-A", NOW).outcome is Outcome.OK
    assert index.lookup("tok-A", NOW).outcome is Outcome.CONSUMED
    assert index.lookup("tok-B", NOW).outcome is Outcome.OK


def test_peeking_at_a_one_time_token_does_not_claim_it():
    index = TokenIndex()
    index.replace_domain(record(console(once=True)))
    assert index.peek("tok-A", NOW).outcome is Outcome.OK
    assert index.peek("tok-A", NOW).outcome is Outcome.OK
    assert index.lookup("tok-A", NOW).outcome is Outcome.OK
    assert index.peek("tok-A", NOW).outcome is Outcome.CONSUMED


def test_a_consumed_token_read_again_from_libvirt_stays_dead():
    index = TokenIndex()
    index.replace_domain(record(console(once=True)))
    index.lookup("tok-A", NOW)
    index.replace_domain(record(console(once=True)))
    index.replace_connection(URI, [record(console(once=True))])
    assert index.lookup("tok-A", NOW).outcome is Outcome.CONSUMED
    assert index.counts()["tokens"] == 0


def test_the_consumed_memory_is_bounded():
    index = TokenIndex(consumed_memory=2)
    for token in ["a", "b", "c"]:
        index.replace_domain(record(console(token, domain=token, once=True), domain=token))
        index.lookup(token, NOW)
    assert index.lookup("a", NOW).outcome is Outcome.UNKNOWN
    assert index.lookup("c", NOW).outcome is Outcome.CONSUMED


def test_fifty_concurrent_claims_of_a_one_time_token_give_exactly_one_ok():
    index = TokenIndex()
    index.replace_domain(record(console(once=True)))
    barrier = threading.Barrier(50)
    outcomes = []

    def claim():
        barrier.wait()
        outcomes.append(index.lookup("tok-A", NOW).outcome)

    threads = [threading.Thread(target=claim) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(Outcome.OK) == 1 and outcomes.count(Outcome.CONSUMED) == 49


def test_a_token_shared_by_two_consoles_is_refused_until_one_goes():
    index = TokenIndex()
    index.replace_domain(record(console(domain="d1"), domain="d1"))
    index.replace_domain(record(console(domain="d2"), domain="d2"))
    assert index.lookup("tok-A", NOW).outcome is Outcome.AMBIGUOUS
    index.remove_domain(URI, "d2")
    assert index.lookup("tok-A", NOW).outcome is Outcome.OK


def test_replacing_a_domain_drops_its_old_tokens():
    index = TokenIndex()
    index.replace_domain(record(console("old")))
    index.replace_domain(record(console("new")))
    assert index.lookup("old", NOW).outcome is Outcome.UNKNOWN
    assert index.lookup("new", NOW).outcome is Outcome.OK


def test_a_full_resync_replaces_only_its_own_connection():
    index = TokenIndex()
    index.replace_domain(record(console("gone"), domain="d1"))
    index.replace_domain(record(console("other", domain="d9", uri="qemu+tls://h2/system"), domain="d9",
                                uri="qemu+tls://h2/system"))
    index.replace_connection(URI, [record(console("kept", domain="d2"), domain="d2")])
    assert index.lookup("gone", NOW).outcome is Outcome.UNKNOWN
    assert index.lookup("kept", NOW).outcome is Outcome.OK
    assert index.lookup("other", NOW).outcome is Outcome.OK


def test_an_unavailable_connection_answers_unavailable_until_resynced():
    index = TokenIndex()
    index.replace_domain(record(console()))
    index.set_unavailable(URI)
    assert index.lookup("tok-A", NOW).outcome is Outcome.UNAVAILABLE
    assert index.lookup("tok-Z", NOW).outcome is Outcome.UNKNOWN
    index.replace_connection(URI, [record(console())])
    assert index.lookup("tok-A", NOW).outcome is Outcome.OK


def test_domains_using_a_secret_include_secrets_whose_value_was_not_readable():
    index = TokenIndex()
    index.replace_domain(record(console(), secrets=["secret-tok-A", "secret-missing"]))
    assert index.domains_using_secret(URI, "secret-missing") == ["d1"]
    assert index.domains_using_secret(URI, "secret-tok-A") == ["d1"]
    assert index.domains_using_secret("qemu:///other", "secret-tok-A") == []


def test_counts():
    index = TokenIndex()
    index.replace_domain(record(console("a"), console("b"), domain="d1"))
    index.replace_domain(record(console("c", domain="d2", running=False, target=None), domain="d2", running=False))
    assert index.counts() == {"tokens": 3, "domains_running": 1, "domains_stopped": 1}
