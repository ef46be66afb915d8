"""The demo behind README's first command, ``scripts/demo``: the whole thing, locally, with the test lab.

It makes a PKI, starts a private libvirtd, defines and starts the guest
``demo`` (SPICE with TLS, VNC with VeNCrypt x509, a pty serial and a TLS
chardev serial, running the lab's echo boot sector), starts resolverd and
proxyd as subprocesses with the generated certificates, runs the real
``resolveradm enable demo --proxy-url ...``, checks every console through
proxyd with the URLs it is about to print, prints them, and waits for
Ctrl-C or SIGTERM to tear everything down.

- :mod:`.addresses`: listen addresses, the URLs' host name, certificate names.
- :mod:`.stack`: bringing it up (and registering the teardown).
- :mod:`.website`: the HTTPS page with noVNC.
- :mod:`.checks`: the tenants' checks through proxyd.
- :mod:`.report`: what is printed.
- :mod:`.terminal`: ``scripts/demo serial``, a terminal on a serial console.
"""
