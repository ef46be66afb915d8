"""The VNC MITM: RFB server towards the tenant, RFB/VeNCrypt client towards QEMU.

After both legs are authenticated (``TenantAuthenticated`` and
``BackendAuthenticated``) ClientInit, ServerInit and everything after are
relayed byte for byte, starting with each event's ``remaining`` bytes.
"""

from .backend import BackendAuthenticated, RfbBackendHandshake, StartTLS
from .errors import AuthenticationFailed, ServerRefused, UnsupportedSecurityType
from .messages import RfbVersion, SecurityType, VeNCryptSubtype
from .tenant import RfbTenantHandshake, TenantAuthenticated
from .vnc_des import vnc_auth_response

__all__ = [
    "AuthenticationFailed",
    "BackendAuthenticated",
    "RfbBackendHandshake",
    "RfbTenantHandshake",
    "RfbVersion",
    "SecurityType",
    "ServerRefused",
    "StartTLS",
    "TenantAuthenticated",
    "UnsupportedSecurityType",
    "VeNCryptSubtype",
    "vnc_auth_response",
]
