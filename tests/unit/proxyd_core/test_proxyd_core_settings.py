import pytest

from lab.pki import Pki
from proxyd import reload, settings
from resolverd.config import ConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def full(pki: Pki) -> list:
    return [
        "--listen", "127.0.0.1:8443",
        "--tls-cert", str(pki.proxyd_server.cert), "--tls-key", str(pki.proxyd_server.key),
        "--resolver-uri", "https://localhost:8081/consoleresolver/",
        "--resolver-cert", str(pki.proxyd_resolverd_client.cert),
        "--resolver-key", str(pki.proxyd_resolverd_client.key), "--resolver-ca", str(pki.ca_cert),
        "--connect-cert", str(pki.proxyd_qemu_client.cert), "--connect-key", str(pki.proxyd_qemu_client.key),
        "--connect-ca", str(pki.ca_cert),
    ]


def without(argv: list, *flags: str) -> list:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in flags:
            skip = True
        else:
            out.append(item)
    return out


def usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        settings.from_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_full_command_line_builds_three_contexts(pki):
    checked, contexts = settings.from_args(full(pki) + [
        "--listen", "[::1]:8443", "--workers", "3", "--allowed-origin", "https://Portal.Example:8443",
        "--idle-timeout", "0", "--connect-server-name", "qemu"])
    assert checked.listen == (("127.0.0.1", 8443), ("::1", 8443))
    assert checked.resolver_uri == "https://localhost:8081/consoleresolver"
    assert checked.workers == 3 and checked.idle_timeout == 0
    assert checked.allowed_origins == ("https://portal.example:8443",)
    assert checked.connect_server_name == "qemu" and not checked.connect_insecure
    assert contexts.public is not None and contexts.resolver is not None and contexts.connect is not None
    assert contexts.resolver.check_hostname and contexts.connect.check_hostname


def test_defaults(pki):
    checked, _ = settings.from_args(full(pki))
    assert checked.admin_listen == ("127.0.0.1", 9180)
    assert (checked.handshake_timeout, checked.drain_grace, checked.idle_timeout) == (10.0, 30.0, 1800.0)
    assert checked.workers >= 1 and checked.allowed_origins == ()


def test_config_file_keys_are_flag_names(pki, tmp_path):
    config = tmp_path / "proxyd.conf"
    config.write_text("[proxyd]\nworkers = 5\nallowed-origin =\n  https://a.example\n  https://b.example\n")
    checked, _ = settings.from_args(full(pki) + ["--config", str(config)])
    assert checked.workers == 5
    assert checked.allowed_origins == ("https://a.example", "https://b.example")


def test_insecure_everywhere_needs_no_files():
    checked, contexts = settings.from_args([
        "--listen", "0.0.0.0:6080", "--listen-insecure", "--resolver-uri", "http://127.0.0.1:8081/consoleresolver",
        "--connect-insecure"])
    assert contexts == settings.Contexts(public=None, resolver=None, connect=None)
    assert checked.listen_insecure and checked.connect_insecure


@pytest.mark.parametrize("change, message", [
    (lambda a: without(a, "--listen"), "missing required setting(s): --listen"),
    (lambda a: without(a, "--resolver-uri"), "--resolver-uri"),
    (lambda a: without(a, "--tls-cert"), "refusing to serve without TLS"),
    (lambda a: a + ["--listen-insecure"], "--listen-insecure contradicts"),
    (lambda a: without(a, "--resolver-ca"), "--resolver-cert, --resolver-key, --resolver-ca go together"),
    (lambda a: without(a, "--connect-cert", "--connect-key", "--connect-ca"),
     "missing required setting(s): --connect-cert, --connect-key, --connect-ca"),
    (lambda a: without(a, "--connect-key"), "go together"),
    (lambda a: a + ["--resolver-uri", "ftp://x/"], "expected https://HOST:PORT/PATH"),
    (lambda a: a + ["--resolver-uri", "http://localhost:8081/consoleresolver"], "clear-text resolver"),
    (lambda a: a + ["--workers", "0"], "must be at least 1"),
    (lambda a: a + ["--idle-timeout", "-1"], "must be at least 0"),
    (lambda a: a + ["--handshake-timeout", "0"], "must be at least 0.1"),
    (lambda a: a + ["--listen", "8443"], "expected HOST:PORT"),
    (lambda a: a + ["--allowed-origin", "https://portal.example/path"], "expected an origin"),
    (lambda a: a + ["--allowed-origin", "portal.example"], "expected an origin"),
])
def test_bad_settings_are_usage_errors(pki, capsys, change, message):
    assert message in usage_error(capsys, change(full(pki)))


def test_clear_text_resolver_refuses_certificates(pki, capsys):
    argv = full(pki) + ["--resolver-uri", "http://localhost:8081/x", "--connect-insecure"]
    assert "need an https:// --resolver-uri" in usage_error(capsys, argv)


def test_unreadable_certificate_is_named(pki, capsys, tmp_path):
    argv = full(pki) + ["--connect-cert", str(tmp_path / "missing.pem")]
    assert f"cannot read certificate {tmp_path / 'missing.pem'}" in usage_error(capsys, argv)


def test_key_not_matching_certificate_is_named(pki, capsys):
    argv = full(pki) + ["--tls-key", str(pki.proxyd_qemu_client.key)]
    assert "cannot load certificate" in usage_error(capsys, argv)


# -- a reload (SIGHUP) reads the config file and TLS files again --------------------------------

def test_the_config_file_is_read_again_and_restart_only_settings_keep_their_running_values(pki, tmp_path):
    config = tmp_path / "proxyd.conf"
    config.write_text("[proxyd]\nworkers = 2\nidle-timeout = 60\n")
    argv = full(pki) + ["--config", str(config)]
    running, _ = settings.from_args(argv)
    config.write_text("[proxyd]\nworkers = 5\nadmin-listen = 127.0.0.1:9999\nidle-timeout = 5\n"
                      "allowed-origin = https://console.example\nlog-level = debug\n")
    reloaded = reload.reread(argv, running)
    assert reloaded.kept == ("admin_listen", "workers")
    assert (reloaded.settings.workers, reloaded.settings.admin_listen) == (2, running.admin_listen)
    assert reloaded.settings.idle_timeout == 5 and reloaded.settings.log_level == "debug"
    assert reloaded.settings.allowed_origins == ("https://console.example",)
    assert reloaded.contexts.public is not None and reloaded.contexts.connect is not None


@pytest.mark.parametrize("breakage, message", [
    ("[proxyd]\nno-such-key = 1\n", "unknown key 'no-such-key'"),
    ("[proxyd]\nidle-timeout = soon\n", "bad value for 'idle-timeout'"),
    ("[proxyd]\nlisten-insecure = yes\n", "--listen-insecure contradicts --tls-cert"),
])
def test_an_unusable_config_raises_instead_of_exiting(pki, tmp_path, breakage, message):
    config = tmp_path / "proxyd.conf"
    config.write_text("[proxyd]\n")
    argv = full(pki) + ["--config", str(config)]
    running, _ = settings.from_args(argv)
    config.write_text(breakage)
    with pytest.raises(ConfigError, match=message):
        reload.reread(argv, running)


def test_a_certificate_that_no_longer_matches_its_key_raises(pki, tmp_path):
    config = tmp_path / "proxyd.conf"
    config.write_text("[proxyd]\n")
    cert = tmp_path / "cert.pem"
    cert.write_bytes(pki.proxyd_server.cert.read_bytes())
    argv = full(pki) + ["--config", str(config)]
    argv[argv.index("--tls-cert") + 1] = str(cert)
    running, _ = settings.from_args(argv)
    cert.write_bytes(pki.issue("renewed-elsewhere").cert.read_bytes())
    with pytest.raises(ConfigError, match=f"cannot load certificate {cert}"):
        reload.reread(argv, running)
