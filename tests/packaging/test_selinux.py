"""The SELinux module: it compiles with the development Makefile, and grants what each daemon needs and no more."""

import re
import shutil
from pathlib import Path
from typing import Set, Tuple

import pytest

from proxyd import settings as proxyd_settings
from resolverd import config
from resolverd import settings as resolverd_settings
from tests.packaging.commands import query, run

pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("virt_console_proxy.te", "virt_console_proxy.if", "virt_console_proxy.fc")
DEVEL_MAKEFILE = "/usr/share/selinux/devel/Makefile"

Rule = Tuple[str, str, str, str]  # source, target, class, permission


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The module built in a scratch copy of selinux/: the .pp and the m4-expanded policy it was compiled from."""
    work = tmp_path_factory.mktemp("selinux")
    for name in SOURCES:
        shutil.copy(REPO / "selinux" / name, work)
    run(["make", "-f", DEVEL_MAKEFILE, "virt_console_proxy.pp"], cwd=work)
    return work / "virt_console_proxy.pp", (work / "tmp" / "virt_console_proxy.tmp").read_text()


def unconditional_rules(policy: str) -> Set[Rule]:
    """Every allow rule outside ``if (boolean) { ... }`` blocks, one tuple per permission."""
    text = re.sub(r"#[^\n]*", "", policy)
    kept, position = [], 0
    for condition in re.finditer(r"\bif\s*\(", text):
        if condition.start() < position:
            continue
        kept.append(text[position:condition.start()])
        position = _after_block(text, text.index("{", condition.end()))
        otherwise = re.match(r"\s*else\s*\{", text[position:])
        if otherwise:
            position = _after_block(text, position + otherwise.end() - 1)
    kept.append(text[position:])
    rules = set()
    for rule in re.finditer(r"\ballow\s+([^:;]+?)\s+([^\s:;][^:;]*):(\S+)\s+([^;]+);", "".join(kept)):
        sources, targets, klass, permissions = (_words(rule.group(i)) for i in range(1, 5))
        rules |= {(s, t, c, p) for s in sources for t in targets for c in klass for p in permissions}
    return rules


def _after_block(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index + 1
    raise AssertionError("unbalanced braces in the expanded policy")


def _words(text: str) -> Set[str]:
    return set(re.findall(r"[\w.]+", text))


def test_module_compiles_to_a_policy_package(compiled, tmp_path):
    package, _ = compiled
    run(["semodule_unpackage", str(package), str(tmp_path / "m.mod"), str(tmp_path / "m.fc")])
    module = (tmp_path / "m.mod").read_bytes()
    for name in (b"virt_console_proxy", b"virt_console_proxyd_t", b"virt_console_resolverd_t",
                 b"virt_console_proxyd_port_t", b"virt_console_resolverd_port_t", b"virt_console_proxy_cert_t"):
        assert name in module


def test_proxyd_binds_its_ports_and_reaches_qemu_and_resolverd(compiled):
    rules = unconditional_rules(compiled[1])
    proxyd = "virt_console_proxyd_t"
    for port in ("http_port_t", "virt_console_proxyd_port_t"):
        assert (proxyd, port, "tcp_socket", "name_bind") in rules
    for port in ("vnc_port_t", "xserver_port_t", "couchdb_port_t", "unreserved_port_type",
                 "virt_console_resolverd_port_t"):
        assert (proxyd, port, "tcp_socket", "name_connect") in rules
    assert (proxyd, "self", "capability", "net_bind_service") in rules


def test_proxyd_never_talks_to_libvirt(compiled):
    rules = unconditional_rules(compiled[1])
    proxyd_targets = {target for source, target, _, _ in rules if source == "virt_console_proxyd_t"}
    assert not {"virtd_t", "virt_runtime_t", "virt_port_t"} & proxyd_targets
    assert ("virt_console_proxyd_t", "port_type", "tcp_socket", "name_connect") not in rules


def test_connecting_anywhere_takes_a_boolean(compiled):
    policy = compiled[1]
    assert re.search(r"\bbool virt_console_proxy_connect_any false;", policy)
    condition = re.search(r"if \(virt_console_proxy_connect_any\) \{", policy)
    assert condition
    block = policy[condition.end() - 1:_after_block(policy, condition.end() - 1)]
    assert re.search(r"allow virt_console_proxyd_t port_type:tcp_socket name_connect;", block)


def test_resolverd_reaches_libvirt_and_binds_its_port(compiled):
    rules = unconditional_rules(compiled[1])
    resolverd = "virt_console_resolverd_t"
    assert (resolverd, "virtd_t", "unix_stream_socket", "connectto") in rules
    assert (resolverd, "virt_runtime_t", "sock_file", "write") in rules
    assert (resolverd, "virt_console_resolverd_port_t", "tcp_socket", "name_bind") in rules
    assert (resolverd, "virt_port_t", "tcp_socket", "name_connect") in rules
    assert not [rule for rule in rules if rule[0] == resolverd and rule[2] == "capability"]


@pytest.mark.parametrize("domain", ["virt_console_proxyd_t", "virt_console_resolverd_t"])
def test_daemons_read_config_and_certificates_but_never_write_them(compiled, domain):
    rules = unconditional_rules(compiled[1])
    for kind in ("virt_console_proxy_conf_t", "virt_console_proxy_cert_t"):
        assert (domain, kind, "file", "read") in rules
        assert not {(domain, kind, "file", p) for p in ("write", "append", "unlink", "create")} & rules


def test_systemd_may_start_the_daemons_with_no_new_privileges(compiled):
    rules = unconditional_rules(compiled[1])
    for domain, entry in (("virt_console_proxyd_t", "virt_console_proxyd_exec_t"),
                          ("virt_console_resolverd_t", "virt_console_resolverd_exec_t")):
        assert ("init_t", domain, "process2", "nnp_transition") in rules
        assert ("init_t", domain, "process", "transition") in rules
        assert (domain, entry, "file", "entrypoint") in rules


INTERFACE_CALLER = """policy_module(vcp_interface_caller, 1.0.0)
type vcp_caller_t;
domain_type(vcp_caller_t)
virt_console_proxy_read_config(vcp_caller_t)
virt_console_proxy_manage_certs(vcp_caller_t)
virt_console_proxy_tcp_connect_resolverd(vcp_caller_t)
"""


def test_interfaces_compile_in_another_module_and_grant_what_they_say(tmp_path):
    for name in SOURCES:
        shutil.copy(REPO / "selinux" / name, tmp_path)
    (tmp_path / "vcp_interface_caller.te").write_text(INTERFACE_CALLER)
    run(["make", "-f", DEVEL_MAKEFILE, "vcp_interface_caller.pp"], cwd=tmp_path)
    rules = unconditional_rules((tmp_path / "tmp" / "vcp_interface_caller.tmp").read_text())
    caller = "vcp_caller_t"
    assert (caller, "virt_console_proxy_conf_t", "file", "read") in rules
    assert (caller, "virt_console_proxy_conf_t", "file", "write") not in rules
    assert {(caller, "virt_console_proxy_cert_t", "file", p) for p in ("create", "write", "unlink")} <= rules
    assert (caller, "virt_console_resolverd_port_t", "tcp_socket", "name_connect") in rules


def file_contexts() -> list:
    """(path regex, file type, context type) of the .fc file."""
    entries = []
    for line in (REPO / "selinux" / "virt_console_proxy.fc").read_text().splitlines():
        fields = line.split()
        if fields:
            context = re.search(r"object_r:(\w+),", fields[-1]).group(1)
            entries.append((fields[0], fields[1] if len(fields) == 3 else "", context))
    return entries


def test_every_file_context_names_packaged_files(build):
    packaged = query(build.rpms["main"], "-l").splitlines()
    for path, _, _ in file_contexts():
        assert any(re.fullmatch(path, name) for name in packaged), f"{path} matches no packaged file"


def test_commands_the_units_start_enter_their_domains(build):
    contexts = {path: context for path, _, context in file_contexts()}
    for daemon in ("proxyd", "resolverd"):
        unit = (build.root / f"usr/lib/systemd/system/virt-console-{daemon}.service").read_text()
        (command,) = re.findall(r"^ExecStart=(\S+)", unit, re.MULTILINE)
        assert contexts[command] == f"virt_console_{daemon}_exec_t"


def spec_ports(name: str) -> Set[int]:
    spec = (REPO / "rpm" / "virt-console-proxy.spec").read_text()
    return {int(port) for port in re.search(rf"^%global {name}\s+(.+)$", spec, re.MULTILINE).group(1).split()}


def test_package_labels_the_default_ports_of_the_sample_configs():
    resolverd_file = config.read_file(resolverd_settings.build_parser(), REPO / "etc" / "resolverd.conf", "resolverd")
    assert spec_ports("resolverd_ports") == {resolverd_file["listen"][1], resolverd_file["console_listen"][1]}
    proxyd_parser = proxyd_settings.build_parser()
    proxyd_file = config.read_file(proxyd_parser, REPO / "etc" / "proxyd.conf", "proxyd")
    admin = proxyd_file.get("admin_listen", proxyd_parser.get_default("admin_listen"))
    assert spec_ports("proxyd_ports") == {admin[1]}
    assert {port for _, port in proxyd_file["listen"]} == {443}, "443 is http_port_t, which proxyd may bind"


def test_port_types_the_package_assigns_exist():
    spec = (REPO / "rpm" / "virt-console-proxy.spec").read_text()
    te = (REPO / "selinux" / "virt_console_proxy.te").read_text()
    assigned = set(re.findall(r"semanage port -[am] -t (\w+)", spec))
    assert assigned == {"virt_console_resolverd_port_t", "virt_console_proxyd_port_t"}
    for port_type in assigned:
        assert re.search(rf"^type {port_type};\ncorenet_port\({port_type}\)", te, re.MULTILINE)
