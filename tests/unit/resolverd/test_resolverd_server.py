import logging
import ssl

import pytest
from gunicorn.config import Config

from lab.pki import Pki
from resolverd import reload, settings
from resolverd.app import TokenPathRedactor
from resolverd.config import ConfigError
from resolverd.logs import token_ref
from resolverd.server import RedactingLogger, ResolverApplication, gunicorn_settings, server_context
from resolverd.tls import SwappableContext


def record(message: str, *args) -> logging.LogRecord:
    return logging.LogRecord("gunicorn.error", logging.DEBUG, __file__, 1, message, args, None)


def test_tokens_in_logged_paths_are_replaced_by_their_reference():
    entry = record("%s %s", "GET", "/consoleresolver/token/s3cr3t-T0ken?x=1")
    assert TokenPathRedactor().filter(entry)
    assert entry.getMessage() == f"GET /consoleresolver/token/{token_ref('s3cr3t-T0ken')}?x=1"


def test_percent_encoded_tokens_are_referenced_by_their_decoded_value():
    entry = record('127.0.0.1 "GET /consoleresolver/token/a%2Fb HTTP/1.1" 404')
    TokenPathRedactor().filter(entry)
    assert entry.getMessage() == f'127.0.0.1 "GET /consoleresolver/token/{token_ref("a/b")} HTTP/1.1" 404'


def test_the_token_of_a_claim_is_referenced_and_the_claim_kept():
    entry = record('127.0.0.1 "POST /consoleresolver/token/s3cr3t-T0ken/claim HTTP/1.1" 409')
    TokenPathRedactor().filter(entry)
    reference = token_ref("s3cr3t-T0ken")
    assert entry.getMessage() == f'127.0.0.1 "POST /consoleresolver/token/{reference}/claim HTTP/1.1" 409'


def test_other_messages_are_untouched():
    entry = record("GET %s", "/healthz")
    TokenPathRedactor().filter(entry)
    assert (entry.msg, entry.args) == ("GET %s", ("/healthz",))


def test_gunicorn_runs_one_threaded_worker_with_mandatory_client_certificates(tmp_path):
    pki = Pki(tmp_path)
    pair = pki.resolverd_server
    checked = settings.from_args(["--connect", "qemu:///x", "--listen", "[::1]:9443", "--threads", "5",
                                  "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                                  "--tls-ca", str(pki.ca_cert)])
    context = server_context(checked)
    assert context is not None
    options = gunicorn_settings(checked, SwappableContext(context))
    assert options["bind"] == ["[::1]:9443"]
    assert (options["workers"], options["worker_class"], options["threads"]) == (1, "gthread", 5)
    assert options["preload_app"] is False and options["control_socket_disable"] is True
    assert options["cert_reqs"] == ssl.CERT_REQUIRED and options["ca_certs"] == str(pki.ca_cert)
    context = options["ssl_context"](Config(), lambda: None)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert options["ssl_context"](Config(), lambda: None) is context
    application = ResolverApplication(checked, [])
    assert application.cfg.workers == 1 and application.cfg.is_ssl
    assert application.cfg.logger_class is RedactingLogger


def test_without_tls_gunicorn_gets_no_certificates():
    checked = settings.from_args(["--connect", "qemu:///x", "--listen-insecure"])
    assert server_context(checked) is None
    options = gunicorn_settings(checked, None)
    assert "certfile" not in options and "ssl_context" not in options
    assert not ResolverApplication(checked, []).cfg.is_ssl


def test_a_reload_reads_the_config_file_and_certificates_again_or_keeps_the_running_ones(tmp_path):
    pki = Pki(tmp_path / "pki")
    cert, config = tmp_path / "cert.pem", tmp_path / "resolverd.conf"
    cert.write_bytes(pki.resolverd_server.cert.read_bytes())
    config.write_text("[resolverd]\nresync-interval = 5\n")
    argv = ["--config", str(config), "--connect", "qemu:///x", "--tls-cert", str(cert),
            "--tls-key", str(pki.resolverd_server.key), "--tls-ca", str(pki.ca_cert)]
    application = ResolverApplication(settings.from_args(argv), argv)
    first = application.cfg.ssl_context(application.cfg, lambda: None)
    config.write_text("[resolverd]\nresync-interval = 7\nthreads = 3\n")
    reloaded = application.reread()
    assert (reloaded.settings.resync_interval, reloaded.settings.threads) == (7, 16)
    assert reloaded.kept == ("threads",)
    renewed = application.cfg.ssl_context(application.cfg, lambda: None)
    assert renewed is reloaded.context and renewed is not first and renewed.verify_mode == ssl.CERT_REQUIRED
    cert.write_bytes(pki.issue("another-server").cert.read_bytes())  # no longer the key's certificate
    config.write_text("[resolverd]\nresync-interval = 9\n")
    with pytest.raises(ConfigError, match=f"cannot load certificate {cert}"):
        application.reread()
    assert application.cfg.ssl_context(application.cfg, lambda: None) is renewed


def test_switching_between_tls_and_clear_text_takes_a_restart(tmp_path):
    argv = ["--connect", "qemu:///x", "--listen-insecure"]
    pki = Pki(tmp_path)
    running = settings.from_args(["--connect", "qemu:///x", "--tls-cert", str(pki.resolverd_server.cert),
                                  "--tls-key", str(pki.resolverd_server.key), "--tls-ca", str(pki.ca_cert)])
    with pytest.raises(ConfigError, match="takes a restart"):
        reload.reread(argv, running)
