"""virt-console-proxy end-to-end test lab: a real libvirtd, real QEMU guests.

Everything is real and made per run: a PKI, a private session-mode libvirtd
(run as the throwaway system user ``vcp-lab`` when the tests run as root, so
it never sees the host's VMs), and QEMU guests whose SPICE, VNC and serial
consoles all speak TLS with that PKI.  Run as root (``scripts/test``); needs
libvirt-daemon, qemu-system-x86 and nasm (.ci/apt-packages.txt).

Fixtures (tests/conftest.py; the lab starts only when a test asks)
-------------------------------------------------------------------
``lab_pki`` (session) -> :class:`lab.pki.Pki`
    ``ca_cert`` (trust anchor of every lab peer), ``qemu_dir`` (QEMU's x509
    dir: ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
    client-key.pem), and :class:`~lab.pki.CertPair` (``.cert``, ``.key``,
    ``.as_tuple``) attributes ``qemu_server``, ``resolverd_server``,
    ``proxyd_server`` (SAN 127.0.0.1, ::1, localhost),
    ``proxyd_qemu_client`` (proxyd -> QEMU), ``proxyd_resolverd_client``
    (proxyd -> resolverd); ``foreign_ca_cert`` and ``foreign_client`` (a CA
    nobody trusts and a client pair it signed).  ``issue(cn, server=,
    client=, sans=, foreign=, valid_from=, valid_until=)`` signs more;
    ``qemu_identity(ca, server_pair)`` (context manager) gives guests
    started inside it another CA/server cert.  Files are mode 0640, group
    of the lab user.
``lab_libvirtd`` (session) -> :class:`lab.libvirtd.PrivateLibvirtd`
    ``uri`` (``qemu+unix:///session?socket=/tmp/vcp-lab-XXXXXXXX/libvirt/run/libvirt/libvirt-sock``;
    usable from any process of root or the lab user), ``connect()`` (a new
    connection, yours to close), ``connection()`` (shared, reopened after a
    restart), ``stop()`` (SIGTERM), ``kill()`` (SIGKILL, like a crash),
    ``start()``, ``restart()``, ``running``, ``pid``, ``log_path``
    (libvirtd's log), ``stdio_path``, ``qemu_log(name)``, ``root``.
    Guests keep running while the daemon is down and are found again by
    ``start()``.  A test that stops the daemon should start it again (the
    guest factory does so at teardown if needed).
``lab_conn`` (function) -> ``libvirt.virConnect``
    The shared live connection to the private libvirtd; do not close it.
``make_guest`` (function) -> :class:`lab.guests.GuestFactory`
    ``make_guest(name=None, *, running=True, persistent=False,
    consoles={"spice", "vnc", "serial", "tls-serial"}, memory_mib=32,
    spice_password=None, wait=True, timeout=60)`` returns a
    :class:`lab.guests.Guest`; ``wait`` blocks until the guest printed its
    banner (about 0.6-2 s).  Everything it made is destroyed and undefined
    at the end of the test, passed or failed.  A transient guest must run.
``lab_guest`` (session) -> :class:`lab.guests.Guest`
    One running transient guest with every console, shared by all tests:
    read from it, never stop or redefine it.  Once any test typed on a
    serial port the banner no longer repeats there: send ENQ for it.
``lab_domain_type`` (session) -> "qemu" or "kvm"
    From VCP_LAB_DOMAIN_TYPE = qemu (default: TCG boots this guest 5-10x
    faster than nested KVM here) | kvm | auto (kvm when usable).
``lab_run_dir`` (session) -> Path of ``/tmp/vcp-lab-XXXXXXXX``, removed at the
    end (keep it with VCP_LAB_KEEP=1; VCP_LAB_DEBUG=1 makes libvirtd log debug).
``lab_account`` (session) -> :class:`lab.account.Account` (name, uid, gid).

Guest
-----
``name``, ``uuid``, ``domain`` (a ``virDomain`` looked up afresh on the
shared connection), ``spice_port``, ``spice_tls_port``, ``spice_password``,
``vnc_port`` (graphics ports of the running guest, None when shut off or
absent; ``refresh_ports()`` rereads them), ``tls_serial_port`` (fixed),
``banner`` (``b"VCP-LAB GUEST READY"``), ``serial_banner(i)`` (the whole
line on serial i: ``b"VCP-LAB GUEST READY on COM1\\r\\n"`` for the pty,
``... on COM2`` for the TLS chardev), ``boot_seconds``, ``consoles``,
``xml()``, ``start()``, ``destroy()``, ``remove()``, ``qemu_log()``,
``console(force=False)`` (COM1 through virDomainOpenConsole) and
``tls_serial(context=None)`` (COM2 over TLS; proxyd's client cert by
default), both :mod:`lab.serial` channels with ``send(data)``,
``read_some(timeout)``, ``read_until(needle, timeout)``, ``drain()``.

The guest program (:mod:`lab.bootsector`, assembled with nasm at test time)
paints the VGA text screen (720x400, white on blue, banner on top), prints
its banner line on each serial port twice a second until that port receives
a byte, then echoes every byte on the port it came from, except ENQ (0x05),
which it answers with the banner line.

Known QEMU 7.2 behaviour: a TLS chardev reads each TLS record only as far
as the serial FIFO has room (at most 14 bytes, fewer when it is not empty)
and leaves the rest inside GnuTLS until more bytes arrive on the socket, so
the tail of a multi-byte write can stall indefinitely.  ``TlsSerial``
therefore sends one-byte records (``record_size=None`` to send writes
whole); a proxy relaying to a serial target has the same problem.

Protocol probes (blocking, independent of proxyd's code)
--------------------------------------------------------
:mod:`lab.spice_link`: ``link(sock, channel_type)`` -> ``LinkReply`` (error,
pub_key, caps), ``authenticate(sock, reply, password)`` -> u32 result.
:mod:`lab.vnc_vencrypt`: ``negotiate(sock)`` -> offer (security types,
VeNCrypt version, subtypes), ``start_tls(sock, context)``, ``finish(tls)``
-> ``ServerInit`` (width, height, name).
:mod:`lab.ports`: ``free_port()``.  TLS contexts are the project's own
(:mod:`resolverd.tls`: ``client_context(ca, cert=None, key=None)``, so
``client_context(pki.ca_cert, *pair.as_tuple)``).

Daemons under test and their clients
------------------------------------
:mod:`lab.resolverd`: ``Resolverd(run_dir, pki, uris, log_level=, extra_args=)``
(free ports, ``start()``/``stop()``, ``lookup(token)``, ``status(token)``,
``metric(name)``, ``client(cert)``, ``log_text()``).
:mod:`lab.proxyd`: ``Proxyd(run_dir, pki, resolver, *flags, workers=,
connect_pair=, connect_ca=)`` (``start()``, ``stop()``, ``kill()``,
``open(token, **websocket options)``, ``url()``, ``metric(sample)``,
``worker_pids()``, ``log_text()``).
:mod:`lab.wsstream`: ``WsStream(ws)`` (a websocket as recv/sendall for the
probes) and ``close_of(ws)`` -> (code, reason) of the server's close frame.
:mod:`lab.consoles`: ``enable(conn, guest, console_spec(type, index, ...))``
(secrets and metadata written with libvirt directly, tokens returned),
``tokens_of(conn, guest)`` (resolveradm's own code), ``write_metadata``,
``secret_of``.
:mod:`lab.polling`: ``within(seconds, condition)``.
tests/e2e/conftest.py: module fixtures ``resolver``, ``guests``, ``guest``
(every console) and ``tokens`` (by 'spice', 'vnc', 'serial0', 'serial1').

Teardown: fixture finalizers and ``teardown.started(start, stop)`` (also
after failures and Ctrl-C), SIGTERM/SIGHUP turned into KeyboardInterrupt, an atexit safety net, a subreaper that ends
libvirtd and every guest if pytest dies, and a reaper of earlier dead runs'
directories and processes at the next start.
"""
