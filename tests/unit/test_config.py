import argparse
from pathlib import Path

import pytest

from resolverd import config


def make_parser() -> argparse.ArgumentParser:
    parser = config.new_parser("demo-prog", "test program")
    parser.add_argument("--listen", default="127.0.0.1:1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connect", action="append", metavar="URI")
    parser.add_argument("--listen-insecure", action="store_true")
    return parser


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.conf"
    path.write_text(text)
    return path


def test_file_values_apply_and_flags_win(tmp_path):
    path = write(tmp_path, "[demo-prog]\nlisten = 0.0.0.0:443\nworkers = 8\nlisten-insecure = yes\n")
    ns = config.parse(make_parser(), ["--config", str(path), "--workers", "3"])
    assert (ns.listen, ns.workers, ns.listen_insecure) == ("0.0.0.0:443", 3, True)


def test_repeatable_flag_takes_one_value_per_line_and_the_command_line_replaces_it(tmp_path):
    path = write(tmp_path, "[demo-prog]\nconnect =\n  qemu:///system\n  qemu+tls://h2/system\n")
    assert config.parse(make_parser(), ["--config", str(path)]).connect == [
        "qemu:///system", "qemu+tls://h2/system"]
    assert config.parse(make_parser(), ["--config", str(path), "--connect", "test:///default"]).connect == [
        "test:///default"]


def test_without_file_repeatable_defaults_to_empty_list():
    assert config.parse(make_parser(), []).connect == []


@pytest.mark.parametrize("text, message", [
    ("[demo-prog]\nlisen = x\n", "unknown key 'lisen'"),
    ("[demo-prog]\nworkers = many\n", "bad value for 'workers'"),
    ("[demo-prog]\nlisten-insecure = maybe\n", "bad value for 'listen-insecure'"),
    ("[demo-prog]\nlog-level = loud\n", "bad value for 'log-level'"),
    ("[other]\nlisten = x\n", "unknown section [other]"),
    ("[demo-prog]\nversion = 1\n", "unknown key 'version'"),
    ("listen = x\n", "demo.conf"),
])
def test_bad_files_are_usage_errors_naming_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as exit_info:
        config.parse(make_parser(), ["--config", str(path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_config_file_names_the_path(tmp_path, capsys):
    with pytest.raises(SystemExit):
        config.parse(make_parser(), ["--config", str(tmp_path / "absent.conf")])
    assert f"cannot read config file {tmp_path / 'absent.conf'}" in capsys.readouterr().err


def test_require_names_every_missing_setting(capsys):
    parser = make_parser()
    parser.add_argument("--tls-cert")
    ns = config.parse(parser, [])
    with pytest.raises(SystemExit):
        config.require(parser, ns, "tls_cert", "connect", "listen")
    error_line = capsys.readouterr().err.splitlines()[-1]
    assert error_line.endswith("missing required setting(s): --tls-cert, --connect "
                              "(give them as flags or in the config file)")


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        config.parse(make_parser(), ["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().startswith("demo-prog 0.")
