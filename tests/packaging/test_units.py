"""The packaged systemd units, users and tmpfiles rules, checked with systemd's own tools."""

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.packaging.commands import run
from tests.packaging.sandbox import MDWE_EXEC, SYSTEM_PYTHON, unit_settings

pytestmark = pytest.mark.timeout(1800)

UNITS = {"virt-console-proxyd.service": 2.0, "virt-console-resolverd.service": 4.0}
UNIT_DIR = Path("usr/lib/systemd/system")
# What the issue asks of both daemons, by the names systemd-analyze security gives its checks.
REQUIRED_CHECKS = ("User=/DynamicUser=", "NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=",
                   "PrivateDevices=", "RestrictAddressFamilies=~AF_PACKET", "RestrictAddressFamilies=~AF_NETLINK",
                   "RestrictAddressFamilies=~…", "SystemCallFilter=~@privileged", "SystemCallFilter=~@mount",
                   "MemoryDenyWriteExecute=", "CapabilityBoundingSet=~CAP_SYS_ADMIN",
                   "CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)", "CapabilityBoundingSet=~CAP_NET_ADMIN",
                   "ProtectKernelTunables=", "ProtectKernelModules=", "ProtectControlGroups=", "RestrictSUIDSGID=")


def security(build, unit: str, *options: str) -> str:
    return run(["systemd-analyze", "security", "--offline=true", *options, str(build.root / UNIT_DIR / unit)]).stdout


def test_systemd_analyze_verify_passes_without_a_warning(build):
    result = run(["systemd-analyze", "verify", f"--root={build.root}", *UNITS],
                 env={**os.environ, "MANPATH": str(build.root / "usr" / "share" / "man")})
    assert result.stdout == "" and result.stderr == ""


@pytest.mark.parametrize("unit, bound", UNITS.items())
def test_exposure_is_within_bounds(build, unit, bound):
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security(build, unit))
    assert overall, f"no exposure figure for {unit}"
    print(f"{unit}: exposure {overall.group(1)}")
    assert float(overall.group(1)) <= bound


@pytest.mark.parametrize("unit", UNITS)
def test_required_sandboxing_is_in_force(build, unit):
    checks = {check["name"]: check["set"] for check in json.loads(security(build, unit, "--json=short"))}
    assert [name for name in REQUIRED_CHECKS if not checks.get(name)] == []


def test_proxyd_keeps_only_net_bind_service(build):
    checks = {check["name"]: check["set"] for check in
              json.loads(security(build, "virt-console-proxyd.service", "--json=short"))}
    assert not checks["CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)"]
    assert all(setting for name, setting in checks.items()
               if name.startswith("CapabilityBoundingSet=") and "BIND_SERVICE" not in name)
    settings = unit_settings(build.root / UNIT_DIR / "virt-console-proxyd.service")
    assert settings["CapabilityBoundingSet"] == settings["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


def test_resolverd_has_no_capability(build):
    checks = json.loads(security(build, "virt-console-resolverd.service", "--json=short"))
    assert all(check["set"] for check in checks if check["name"].startswith("CapabilityBoundingSet="))


@pytest.mark.parametrize("unit", UNITS)
def test_service_lifecycle(build, unit):
    settings = unit_settings(build.root / UNIT_DIR / unit)
    command = unit.split("-")[-1].split(".")[0]
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == [f"/usr/bin/{command}"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["KillMode"] == ["mixed"]


def test_units_run_as_the_users_sysusers_creates(build, tmp_path):
    (tmp_path / "etc").mkdir()
    run(["systemd-sysusers", f"--root={tmp_path}", str(build.root / "usr/lib/sysusers.d/virt-console-proxy.conf")])
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    for unit in UNITS:
        settings = unit_settings(build.root / UNIT_DIR / unit)
        (user,), (group,) = settings["User"], settings["Group"]
        assert user == group and user in passwd
        assert int(passwd[user][2]) < 1000 and passwd[user][6] in ("/usr/sbin/nologin", "/sbin/nologin")
    assert {"virt-console-proxy", "virt-console-resolver"} <= set(passwd)


def test_polkit_rule_names_resolverd_user(build):
    rule = (build.root / "usr/share/polkit-1/rules.d/50-virt-console-resolverd.rules").read_text()
    (user,) = unit_settings(build.root / UNIT_DIR / "virt-console-resolverd.service")["User"]
    assert f'subject.user == "{user}"' in rule and '"org.libvirt.unix.manage"' in rule


def test_tmpfiles_give_each_key_to_its_daemon_alone(build, tmp_path):
    (tmp_path / "etc").mkdir()
    run(["systemd-sysusers", f"--root={tmp_path}", str(build.root / "usr/lib/sysusers.d/virt-console-proxy.conf")])
    groups = {line.split(":")[0]: int(line.split(":")[2]) for line in (tmp_path / "etc/group").read_text().splitlines()}
    pki = tmp_path / "etc/pki/virt-console-proxy"
    pki.mkdir(parents=True)
    names = ("ca-key.pem", "proxyd-key.pem", "proxyd-client-key.pem", "resolverd-key.pem", "ca-cert.pem")
    for name in names:
        (pki / name).write_text("")
        (pki / name).chmod(0o666)
    run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
         str(build.root / "usr/lib/tmpfiles.d/virt-console-proxy.conf")])

    def owner(name: str):
        info = (pki / name).stat()
        return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid

    assert owner("ca-key.pem") == (0o600, 0, 0)
    assert owner("proxyd-key.pem") == owner("proxyd-client-key.pem") == (0o640, 0, groups["virt-console-proxy"])
    assert owner("resolverd-key.pem") == (0o640, 0, groups["virt-console-resolver"])
    assert owner("ca-cert.pem")[0] == 0o666, "certificates are not the tmpfiles rules' business"
    assert stat.S_IMODE(pki.stat().st_mode) == 0o755


CRYPTO_UNDER_MDWE = """
import sys
from proxyd.protocol.rfb.vnc_des import vnc_auth_response
from proxyd.protocol.spice_link.ticket import TicketKey, encrypt_ticket, ticket_plaintext
from resolveradm import pki
key = TicketKey.generate()
assert key.decrypt(encrypt_ticket(key.public_der, ticket_plaintext("s3cret"))) == "s3cret"
assert len(vnc_auth_response(bytes(16), b"password")) == 16
directory = pki.Path(sys.argv[1])
pki.make(pki.plan(directory, qemu_dir=directory / "qemu"))
print("crypto ok")
"""


def test_packaged_crypto_works_under_memory_deny_write_execute(build, tmp_path):
    """cryptography (Rust and cffi) as proxyd's SPICE/VNC handshakes and resolveradm pki use it, with MDWE on."""
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": build.python_path}
    result = run([SYSTEM_PYTHON, str(MDWE_EXEC), SYSTEM_PYTHON, "-c", CRYPTO_UNDER_MDWE, str(tmp_path)],
                 env=environment)
    assert result.stdout.strip() == "crypto ok"
    assert (tmp_path / "qemu" / "server-cert.pem").is_file()
