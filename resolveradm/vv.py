"""``resolveradm vv DOMAIN``: the remote-viewer file (resolverd.vvfile) that opens DOMAIN's SPICE console.

The file holds the token: it is written readable by its owner only.
"""

import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from resolveradm.access import ConsoleAccess
from resolveradm.errors import AdmError, Inconsistent, NoConsoles
from resolverd import vvfile
from resolverd.settings import Address


def render(title: str, proxy: Address, token: str, ca_pem: str, subject: str, connect_proxy: bool) -> str:
    try:
        return vvfile.render(title, proxy, token, ca_pem, subject, connect_proxy)
    except ValueError as exc:
        raise AdmError(f"{title}: {exc}; 'rotate' gives it a new one") from None


def spice_token(title: str, consoles: Sequence[ConsoleAccess], index: int) -> str:
    for access in consoles:
        if access.console.type == "spice" and access.console.index == index:
            if access.token is None:
                raise Inconsistent(f"the secret of {title}'s SPICE console {index} no longer exists; "
                                   "'disable' then 'enable' makes a new one")
            return access.token
    raise NoConsoles(f"{title} has no SPICE console {index} with console access enabled ('enable' first)")


def read_files(ca: Path, certificate: Path) -> Tuple[str, str]:
    """(the CA's PEM, proxyd's certificate's subject)."""
    try:
        return vvfile.proxy_identity(ca, certificate)
    except OSError as exc:
        raise AdmError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise AdmError(f"not a PEM certificate ({ca} or {certificate}): {exc}") from None


def write(text: str, output: Optional[Path]) -> None:
    """To ``output`` (created readable by its owner only), or stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
    except OSError as exc:
        raise AdmError(f"cannot write {output}: {exc.strerror}") from None
