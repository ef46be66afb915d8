"""resolveradm: the admin command that gives a libvirt domain's consoles to the proxy, and takes them back.

It writes the source of truth resolverd serves: one libvirt secret per console
(its value is the token a tenant presents) and the lcp metadata in the domain
XML that names those secrets (schema: resolverd.metadata).
"""
