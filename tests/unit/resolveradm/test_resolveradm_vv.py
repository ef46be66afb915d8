import pytest

from resolveradm.access import ConsoleAccess
from resolveradm.errors import AdmError, Inconsistent, NoConsoles
from resolveradm.vv import render, spice_token
from resolverd.metadata import Console


@pytest.mark.parametrize("token", ["a@b", "a:b", "a/b", "a%b", "a?b", "a\nb"])
def test_tokens_a_vv_file_cannot_carry_are_refused(token):
    with pytest.raises(AdmError, match="cannot go into a .vv file"):
        render("demo", ("h", 1), token, "-----BEGIN CERTIFICATE-----\n", "CN=p", connect_proxy=False)


def test_the_spice_console_is_picked_by_index():
    consoles = (ConsoleAccess(Console(type="vnc", secret_uuid="u1", index=0), "vnc-token"),
                ConsoleAccess(Console(type="spice", secret_uuid="u2", index=0), "spice-token"),
                ConsoleAccess(Console(type="spice", secret_uuid="u3", index=1), None))
    assert spice_token("demo", consoles, 0) == "spice-token"
    with pytest.raises(Inconsistent, match="no longer exists"):
        spice_token("demo", consoles, 1)
    with pytest.raises(NoConsoles, match="no SPICE console 2"):
        spice_token("demo", consoles, 2)
