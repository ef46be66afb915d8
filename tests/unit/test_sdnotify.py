import logging
import os
import socket
import time
import uuid

import pytest

from resolverd import sdnotify


@pytest.fixture
def manager(tmp_path, monkeypatch):
    """A datagram socket standing where systemd's notify socket would be, named by a path."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield receiver


def received(receiver: socket.socket) -> list:
    return receiver.recv(4096).decode("utf-8").split("\n")


def test_ready_sends_ready(manager):
    assert sdnotify.ready() is True
    assert received(manager) == ["READY=1"]


def test_ready_with_status_sends_both_in_one_datagram(manager):
    assert sdnotify.ready("listening on [::]:443")
    assert received(manager) == ["READY=1", "STATUS=listening on [::]:443"]


def test_stopping_status_and_watchdog(manager):
    assert sdnotify.stopping("draining 3 sessions")
    assert received(manager) == ["STOPPING=1", "STATUS=draining 3 sessions"]
    assert sdnotify.status("3 sessions, 2 workers")
    assert received(manager) == ["STATUS=3 sessions, 2 workers"]
    assert sdnotify.watchdog()
    assert received(manager) == ["WATCHDOG=1"]


def test_reloading_carries_the_monotonic_clock(manager):
    before = time.monotonic_ns() // 1000
    assert sdnotify.reloading("re-reading certificates")
    after = time.monotonic_ns() // 1000
    reloading, monotonic, status = received(manager)
    assert reloading == "RELOADING=1" and status == "STATUS=re-reading certificates"
    key, _, usec = monotonic.partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(usec) <= after


def test_status_text_is_sent_as_utf8(manager):
    assert sdnotify.status("prêt")
    assert received(manager) == ["STATUS=prêt"]


def test_abstract_socket_name(monkeypatch):
    name = f"vcp-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert received(receiver) == ["READY=1"]


def test_without_a_service_manager_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.stopping() is False


def test_relative_socket_path_is_refused_and_logged(monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", "run/notify")
    with caplog.at_level(logging.WARNING, logger="resolverd.sdnotify"):
        assert sdnotify.ready() is False
    assert "run/notify" in caplog.text


def test_unreachable_socket_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    missing = str(tmp_path / "gone")
    monkeypatch.setenv("NOTIFY_SOCKET", missing)
    with caplog.at_level(logging.WARNING, logger="resolverd.sdnotify"):
        assert sdnotify.ready() is False
    assert missing in caplog.text


@pytest.mark.parametrize("assignment", ["READY", "=1", "READY=1\nSTATUS=forged", ""])
def test_malformed_assignment_is_refused(manager, assignment):
    with pytest.raises(ValueError):
        sdnotify.notify(assignment)


def test_status_with_a_newline_cannot_inject_a_field(manager):
    with pytest.raises(ValueError):
        sdnotify.status("fine\nREADY=1")
    with pytest.raises(ValueError):
        sdnotify.stopping("fine\nERRNO=5")


def test_notify_needs_an_assignment(manager):
    with pytest.raises(ValueError):
        sdnotify.notify()


def test_watchdog_interval_for_this_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 5.0
    monkeypatch.delenv("WATCHDOG_PID")
    assert sdnotify.watchdog_interval() == 5.0


@pytest.mark.parametrize("usec, pid", [(None, None), ("0", None), ("five", None), ("-1", None),
                                       ("5000000", "1")])
def test_no_watchdog_interval(monkeypatch, usec, pid):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert sdnotify.watchdog_interval() is None
