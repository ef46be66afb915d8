"""The errors resolveradm reports, each with its exit status, and how a libvirt error maps onto them."""

import libvirt

USAGE = 2  # argparse's own status for a bad command line

EXIT_STATUSES = (
    (0, "success, including a request that found nothing to change"),
    (1, "any other libvirt failure (every change made before it was undone); pki: a file or setting"),
    (USAGE, "usage: a bad flag, value or config file"),
    (3, "the domain does not exist"),
    (4, "libvirt cannot be reached, or refused the connection or the operation (permission)"),
    (5, "no console to act on: the domain has none (enable), or none matches --type/--index (rotate)"),
    (6, "console access to the domain is not enabled (show, rotate)"),
    (7, "the domain's console metadata is malformed, or names a secret that no longer exists "
        "(disable, then enable, repairs it)"),
    (130, "interrupted (every change made before was undone)"),
)

_PERMISSION_OR_UNREACHABLE = {
    libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE, libvirt.VIR_ERR_OPERATION_DENIED, libvirt.VIR_ERR_ACCESS_DENIED,
}


class AdmError(Exception):
    """A failure to report on one line; ``exit_status`` is what the command exits with."""

    exit_status = 1


class DomainNotFound(AdmError):
    exit_status = 3


class LibvirtUnavailable(AdmError):
    exit_status = 4


class NoConsoles(AdmError):
    exit_status = 5


class NotEnabled(AdmError):
    exit_status = 6


class Inconsistent(AdmError):
    exit_status = 7


def from_libvirt(error: libvirt.libvirtError) -> AdmError:
    """The AdmError that reports a libvirt error nobody handled closer to where it happened."""
    code = error.get_error_code()
    message = f"libvirt: {error.get_error_message() or error}"
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return DomainNotFound(message)
    if code in _PERMISSION_OR_UNREACHABLE:
        return LibvirtUnavailable(message)
    return AdmError(message)


def epilog() -> str:
    """The exit statuses, as ``--help`` lists them."""
    return "exit status:\n" + "\n".join(f"  {status:<4} {meaning}" for status, meaning in EXIT_STATUSES)
