from pathlib import Path

import pytest

from resolverd import settings
from lab.pki import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_flags(pki: Pki):
    pair = pki.resolverd_server
    return ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key), "--tls-ca", str(pki.ca_cert)]


def usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        settings.from_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_full_command_line(pki):
    checked = settings.from_args(["--connect", "qemu:///system", "--connect", "qemu+tls://h2/system",
                                  "--connect", "qemu:///system", "--listen", "[::1]:8443",
                                  "--console-listen", "0.0.0.0:7000", "--resync-interval", "2.5",
                                  "--threads", "4"] + tls_flags(pki))
    assert checked.connect == ("qemu:///system", "qemu+tls://h2/system")
    assert checked.listen == ("::1", 8443) and checked.console_listen == ("0.0.0.0", 7000)
    assert checked.tls_enabled and checked.tls_ca == pki.ca_cert
    assert (checked.resync_interval, checked.threads, checked.console_advertise) == (2.5, 4, None)


def test_remote_viewer_files_need_proxyds_address_ca_and_certificate(pki, capsys):
    proxy = ["--proxy-public", "console.example.com:443", "--proxy-ca", str(pki.ca_cert),
             "--proxy-cert", str(pki.proxyd_server.cert)]
    checked = settings.from_args(["--connect", "test:///default", "--listen-insecure"] + proxy)
    assert (checked.proxy_public, checked.proxy_ca) == (("console.example.com", 443), pki.ca_cert)
    assert "go together" in usage_error(capsys, ["--connect", "test:///default", "--listen-insecure"] + proxy[:4])
    unreadable = proxy[:4] + ["--proxy-cert", "/nonexistent.pem"]
    assert "cannot read /nonexistent.pem" in usage_error(capsys, ["--connect", "test:///default",
                                                                   "--listen-insecure"] + unreadable)


def test_defaults_with_listen_insecure():
    checked = settings.from_args(["--connect", "test:///default", "--listen-insecure"])
    assert checked.listen == ("127.0.0.1", 8081) and not checked.tls_enabled
    assert checked.console_listen is None and checked.resync_interval == 60.0


def test_without_certificates_it_refuses_to_start(capsys):
    assert "refusing to serve without TLS" in usage_error(capsys, ["--connect", "test:///default"])


@pytest.mark.parametrize("extra, message", [
    ([], "missing required setting(s): --connect"),
    (["--tls-cert", "/x"], "go together"),
    (["--listen", "8081"], "expected HOST:PORT"),
    (["--listen", "h:99999"], "expected HOST:PORT"),
    (["--listen", "::1:80"], "in brackets"),
    (["--resync-interval", "0"], "greater than 0"),
    (["--resync-interval", "soon"], "invalid float value"),
    (["--threads", "-1"], "greater than 0"),
])
def test_bad_command_lines(capsys, extra, message):
    connect = [] if "--connect" in message else ["--connect", "test:///default"]
    assert message in usage_error(capsys, connect + ["--listen-insecure"] + extra)


def test_listen_insecure_contradicts_certificates(capsys, pki):
    argv = ["--connect", "test:///default", "--listen-insecure"] + tls_flags(pki)
    assert "contradicts" in usage_error(capsys, argv)


def test_the_console_bridge_needs_certificates(capsys):
    argv = ["--connect", "test:///default", "--listen-insecure", "--console-listen", "127.0.0.1:7000"]
    assert "--console-listen needs" in usage_error(capsys, argv)


def test_a_bad_advertised_bridge_address(capsys, pki):
    argv = ["--connect", "test:///default", "--console-advertise", "nowhere"] + tls_flags(pki)
    assert "--console-advertise: expected HOST:PORT" in usage_error(capsys, argv)


def test_unreadable_certificate_files_are_named(capsys, pki, tmp_path):
    argv = ["--connect", "test:///default", "--tls-cert", str(tmp_path / "absent.pem"),
            "--tls-key", str(pki.resolverd_server.key), "--tls-ca", str(pki.ca_cert)]
    assert f"cannot read certificate {tmp_path / 'absent.pem'}" in usage_error(capsys, argv)


def test_a_key_that_does_not_match_is_named(capsys, pki):
    argv = ["--connect", "test:///default", "--tls-cert", str(pki.resolverd_server.cert),
            "--tls-key", str(pki.proxyd_server.key), "--tls-ca", str(pki.ca_cert)]
    assert f"cannot load certificate {pki.resolverd_server.cert}" in usage_error(capsys, argv)


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "resolverd.conf"
    path.write_text("[resolverd]\n" + body)
    return path


def test_the_config_file_uses_the_flag_names(tmp_path, pki):
    pair = pki.resolverd_server
    path = write_config(tmp_path, f"connect =\n  qemu:///a\n  qemu:///b\nlisten = 127.0.0.1:9000\n"
                                  f"tls-cert = {pair.cert}\ntls-key = {pair.key}\ntls-ca = {pki.ca_cert}\n"
                                  f"console-listen = 127.0.0.1:7001\nresync-interval = 5\n")
    checked = settings.from_args(["--config", str(path)])
    assert checked.connect == ("qemu:///a", "qemu:///b") and checked.listen == ("127.0.0.1", 9000)
    assert checked.console_listen == ("127.0.0.1", 7001) and checked.resync_interval == 5.0


def test_create_app_settings_come_from_the_environment(tmp_path, monkeypatch):
    path = write_config(tmp_path, "connect = qemu:///c\nlisten-insecure = yes\n")
    monkeypatch.setenv(settings.CONFIG_ENV, str(path))
    assert settings.from_config_file().connect == ("qemu:///c",)
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other", "connect = qemu:///d\nlisten-insecure = yes\n")
    assert settings.from_config_file(str(other)).connect == ("qemu:///d",)


def test_a_bad_config_value_names_the_key(capsys, tmp_path):
    path = write_config(tmp_path, "connect = qemu:///c\nlisten-insecure = yes\nconsole-listen = nowhere\n")
    assert "bad value for 'console-listen'" in usage_error(capsys, ["--config", str(path)])


def test_help_names_every_flag(capsys):
    with pytest.raises(SystemExit):
        settings.from_args(["--help"])
    text = capsys.readouterr().out
    for flag in ["--config", "--log-level", "--version", "--connect", "--listen", "--tls-cert", "--tls-key",
                 "--tls-ca", "--listen-insecure", "--console-listen", "--console-advertise",
                 "--resync-interval", "--threads", "--proxy-public", "--proxy-ca", "--proxy-cert"]:
        assert flag in text
