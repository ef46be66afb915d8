"""The RPMs rpmbuild makes from the sdist: their files, attributes, scriptlets and build checks."""

import re
import subprocess
from pathlib import Path

import pytest

from resolverd import __version__
from tests.packaging.commands import query, run

pytestmark = pytest.mark.timeout(1800)

COMMANDS = ("proxyd", "resolverd", "resolveradm")
MAIN_FILES = (
    "/usr/bin/proxyd", "/usr/bin/resolverd", "/usr/bin/resolveradm",
    "/usr/lib/systemd/system/virt-console-proxyd.service",
    "/usr/lib/systemd/system/virt-console-resolverd.service",
    "/usr/lib/sysusers.d/virt-console-proxy.conf",
    "/usr/lib/tmpfiles.d/virt-console-proxy.conf",
    "/usr/share/polkit-1/rules.d/50-virt-console-resolverd.rules",
    "/etc/virt-console-proxy/proxyd.conf", "/etc/virt-console-proxy/resolverd.conf",
    "/etc/pki/virt-console-proxy",
    "/usr/share/man/man1/proxyd.1", "/usr/share/man/man1/resolverd.1", "/usr/share/man/man1/resolveradm.1",
)
SELINUX_FILES = (
    "/usr/share/selinux/packages/targeted/virt_console_proxy.pp.bz2",
    "/usr/share/selinux/devel/include/distributed/virt_console_proxy.if",
)


def file_table(rpm: Path) -> dict:
    """path -> (mode, user, group, flags) as rpm records them."""
    text = query(rpm, "--qf", "[%{FILENAMES}\t%{FILEMODES:octal}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}"
                              "\t%{FILEFLAGS:fflags}\n]")
    return {path: tuple(rest) for path, *rest in (line.split("\t") for line in text.splitlines())}


def test_rpmbuild_makes_the_package_and_its_selinux_subpackage(build):
    assert set(build.rpms) == {"main", "selinux"}
    for rpm in build.rpms.values():
        assert query(rpm, "--qf", "%{VERSION}") == __version__


def test_check_section_ran_the_unit_tests(build):
    check = build.log.split("%check", 1)[1]
    assert "tests/unit" in check
    assert re.search(r"=+ \d+ passed", check) and " failed" not in check


@pytest.mark.parametrize("path", MAIN_FILES)
def test_main_package_holds(build, path):
    assert path in query(build.rpms["main"], "-l").splitlines()


@pytest.mark.parametrize("path", SELINUX_FILES)
def test_selinux_package_holds(build, path):
    assert path in query(build.rpms["selinux"], "-l").splitlines()


@pytest.mark.parametrize("package", COMMANDS)
def test_python_packages_are_installed(build, package):
    listing = query(build.rpms["main"], "-l")
    assert re.search(rf"/site-packages/{package}/__init__\.py$|/dist-packages/{package}/__init__\.py$",
                     listing, re.MULTILINE)


def test_configs_are_noreplace_and_readable_by_their_service_only(build):
    table = file_table(build.rpms["main"])
    assert table["/etc/virt-console-proxy/proxyd.conf"] == ("100640", "root", "virt-console-proxy", "cn")
    assert table["/etc/virt-console-proxy/resolverd.conf"] == ("100640", "root", "virt-console-resolver", "cn")


def test_commands_run_the_system_python(build):
    for command in COMMANDS:
        first_line = (build.root / "usr" / "bin" / command).read_text().splitlines()[0]
        assert first_line == "#!/usr/bin/python3 -s"


@pytest.mark.parametrize("command", COMMANDS)
def test_man_pages_are_the_help_of_each_command(build, command):
    page = build.root / "usr" / "share" / "man" / "man1" / f"{command}.1"
    rendered = run(["man", "-l", "-P", "cat", str(page)], env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin"}).stdout
    assert rendered.split("\n", 1)[0].startswith(f"{command.upper()}(1)")
    assert "--log-level" in rendered and "--version" in rendered and "Traceback" not in rendered


def test_install_scriptlets(build):
    main = query(build.rpms["main"], "--scripts")
    assert "systemd-sysusers" in main and "virt-console-resolver" in main
    assert re.search(r"systemctl .*preset virt-console-proxyd.service virt-console-resolverd.service", main)
    assert "systemd-tmpfiles --create /usr/lib/tmpfiles.d/virt-console-proxy.conf" in main
    assert re.search(r"systemctl .*try-restart virt-console-proxyd.service virt-console-resolverd.service", main)
    selinux = query(build.rpms["selinux"], "--scripts")
    assert "semodule -n -s targeted -X 200 -i /usr/share/selinux/packages/targeted/virt_console_proxy.pp.bz2" \
        in selinux
    assert "semodule -n -X 200 -s targeted -r virt_console_proxy" in selinux
    assert "semanage port -a -t virt_console_resolverd_port_t -p tcp $port" in selinux
    assert "semanage port -d -p tcp $port" in selinux


def test_selinux_subpackage_requires_the_policy_and_semanage(build):
    requires = query(build.rpms["selinux"], "--requires").splitlines()
    assert {"selinux-policy-targeted", "policycoreutils-python-utils"} <= set(requires)
    assert "(virt-console-proxy-selinux if selinux-policy-targeted)" in query(build.rpms["main"], "--requires")


def test_packaged_selinux_module_unpacks(build, tmp_path):
    packed = build.root / SELINUX_FILES[0].lstrip("/")
    module = tmp_path / "virt_console_proxy.pp"
    module.write_bytes(subprocess.run(["bunzip2", "-c", str(packed)], capture_output=True, check=True).stdout)
    run(["semodule_unpackage", str(module), str(tmp_path / "m.mod"), str(tmp_path / "m.fc")])
    source = (Path(__file__).parents[2] / "selinux" / "virt_console_proxy.fc").read_text()
    expanded = re.sub(r"gen_context\(([^,]+),(\w+)\)", r"\1:\2", source)
    assert file_contexts((tmp_path / "m.fc").read_text()) == file_contexts(expanded)


def file_contexts(text: str) -> list:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
