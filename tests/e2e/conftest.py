"""Module fixtures shared by proxyd's end-to-end tests: a resolverd, a guest with every console, its tokens."""

from __future__ import annotations

from typing import Dict, Iterator

import pytest

from lab.consoles import tokens_of
from lab.guests import Guest, GuestFactory
from lab.polling import within
from lab.resolverd import Resolverd
from lab.teardown import started


@pytest.fixture(scope="module")
def resolver(lab_run_dir, lab_pki, lab_libvirtd) -> Iterator[Resolverd]:
    """A resolverd watching the lab's libvirtd (its own per test module)."""
    server = Resolverd(lab_run_dir, lab_pki, [lab_libvirtd.uri], log_level="info")
    with started(server.start, server.stop):
        yield server


@pytest.fixture(scope="module")
def guests(lab_libvirtd, lab_image, lab_pki, lab_run_dir, lab_domain_type) -> Iterator[GuestFactory]:
    """A guest factory whose guests live until the end of the test module."""
    factory = GuestFactory(lab_libvirtd, lab_image, lab_pki, lab_run_dir / "disks-proxyd", lab_domain_type)
    with started(lambda: None, factory.cleanup):
        yield factory


@pytest.fixture(scope="module")
def guest(guests) -> Guest:
    """A running guest with every console."""
    return guests(name="px-main")


@pytest.fixture(scope="module")
def tokens(lab_libvirtd, guest, resolver) -> Dict[str, str]:
    """The guest's consoles enabled with resolveradm's code, once resolverd resolves them."""
    named = tokens_of(lab_libvirtd.connection(), guest)
    within(10, lambda: resolver.lookup(named["vnc"]).status_code == 200)
    return named
