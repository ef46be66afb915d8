"""proxyd: the public console proxy.

Tenants reach SPICE, VNC and serial consoles through one TLS port with a
token; proxyd asks resolverd (over mutual TLS) where the console is and
talks to QEMU over mutual TLS.  It never talks to libvirt.  A master
process (proxyd.master) supervises forked workers (proxyd.worker), each an
asyncio event loop over many connections (proxyd.connection); the protocol
handshakes are sans-I/O machines in proxyd.protocol.
"""
