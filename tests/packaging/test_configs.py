"""The sample configs of /etc/virt-console-proxy: every flag documented, every set key valid."""

import argparse
import re
from pathlib import Path

import pytest

from proxyd import settings as proxyd_settings
from resolverd import config
from resolverd import settings as resolverd_settings
from resolveradm import pki

REPO = Path(__file__).resolve().parents[2]
PARSERS = {"proxyd": proxyd_settings.build_parser, "resolverd": resolverd_settings.build_parser}
NOT_IN_FILES = {"help", "version", "config"}


def long_flags(parser: argparse.ArgumentParser) -> set:
    return {option[2:] for action in parser._actions for option in action.option_strings
            if option.startswith("--") and option[2:] not in NOT_IN_FILES}


def sample(program: str) -> str:
    return (REPO / "etc" / f"{program}.conf").read_text()


@pytest.mark.parametrize("program", PARSERS)
def test_every_flag_is_in_the_sample_with_a_comment_above(program):
    lines = sample(program).splitlines()
    keys = {}
    for number, line in enumerate(lines):
        found = re.match(r"^#?([a-z][a-z-]*) = ", line)
        if found:
            keys[found.group(1)] = number
    assert set(keys) == long_flags(PARSERS[program]())
    for key, number in keys.items():
        above = lines[number - 1]
        assert above.startswith("# ") or re.match(r"^#?[a-z-]+ = ", above), f"{key} has no comment above it"


@pytest.mark.parametrize("program", PARSERS)
def test_set_keys_are_valid(program):
    values = config.read_file(PARSERS[program](), REPO / "etc" / f"{program}.conf", program)
    assert values, "the sample sets the keys a first start needs"


@pytest.mark.parametrize("program", PARSERS)
def test_commented_examples_are_valid_too(program, tmp_path):
    """Uncommenting any example gives a file the daemon accepts."""
    uncommented = re.sub(r"^#([a-z][a-z-]* = )", r"\1", sample(program), flags=re.MULTILINE)
    uncommented = re.sub(r"^#(    \S)", r"\1", uncommented, flags=re.MULTILINE)
    (tmp_path / "example.conf").write_text(uncommented)
    values = config.read_file(PARSERS[program](), tmp_path / "example.conf", program)
    assert set(values) == {action.dest for action in PARSERS[program]()._actions
                           if any(o[2:] in long_flags(PARSERS[program]()) for o in action.option_strings)}


@pytest.mark.parametrize("program", PARSERS)
def test_certificate_paths_are_those_resolveradm_pki_writes(program):
    written = {str(path) for leaf in pki.plan(pki.DEFAULT_DIR).leaves for path in (leaf.cert, leaf.key)}
    written.add(str(pki.DEFAULT_DIR / "ca-cert.pem"))
    values = config.read_file(PARSERS[program](), REPO / "etc" / f"{program}.conf", program)
    paths = {str(value) for value in values.values() if isinstance(value, Path)}
    assert paths and paths <= written
