"""resolverd: answers the proxy's token look-ups from libvirt's domain metadata and secrets.

It also owns the plumbing the three programs share (config, TLS contexts,
logging) and the console metadata schema that resolveradm writes.
"""

__version__ = "0.1.0"
