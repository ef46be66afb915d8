"""The private libvirtd's configuration files (libvirtd.conf, qemu.conf)."""

from __future__ import annotations

from pathlib import Path


def _quote(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ValueError(f"cannot quote {value!r} for a libvirt config file")
    return f'"{value}"'


def libvirtd_conf(log_file: Path, debug: bool = False) -> str:
    """libvirtd.conf: log to a file of the run (warnings, or debug for qemu)."""
    outputs = f"1:file:{log_file}" if debug else f"3:file:{log_file}"
    lines = [f"log_outputs = {_quote(outputs)}"]
    if debug:
        lines.append('log_filters = "1:qemu 1:libvirt 4:object 4:json 4:event 1:util"')
    return "\n".join(lines) + "\n"


def qemu_conf(x509_dir: Path, display_ports: tuple[int, int] = (5900, 65535)) -> str:
    """qemu.conf: TLS everywhere with the run's PKI, no sandbox extras.

    - SPICE: TLS port with the run's server cert.
    - VNC: VeNCrypt x509 with mandatory client certificates.
    - chardevs with tls='yes': TLS with mandatory client certificates.
    - SPICE/VNC autoports from ``display_ports`` (a range per lab, so
      concurrent labs do not race for the same ports);
    - no virtlogd (QEMU writes its log file itself), no security driver
      and no cgroups, which an unprivileged session daemon cannot use here.
    """
    cert_dir = _quote(str(x509_dir))
    return "\n".join(
        [
            f"default_tls_x509_cert_dir = {cert_dir}",
            "default_tls_x509_verify = 1",
            "spice_tls = 1",
            f"spice_tls_x509_cert_dir = {cert_dir}",
            "vnc_tls = 1",
            f"vnc_tls_x509_cert_dir = {cert_dir}",
            "vnc_tls_x509_verify = 1",
            "chardev_tls = 1",
            f"chardev_tls_x509_cert_dir = {cert_dir}",
            "chardev_tls_x509_verify = 1",
            f"remote_display_port_min = {display_ports[0]}",
            f"remote_display_port_max = {display_ports[1]}",
            'stdio_handler = "file"',
            'security_driver = "none"',
            "cgroup_controllers = [ ]",
            "",
        ]
    )
