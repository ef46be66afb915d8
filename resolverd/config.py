"""Command-line flags with an optional INI file that uses the same names.

The INI file has one section named after the program (``[proxyd]``,
``[resolverd]``, ``[resolveradm]``) whose keys are the long flag names without
their leading dashes: ``--resolver-uri URI`` and ``resolver-uri = URI`` mean
the same.  Flags given on the command line win over the file.  A repeatable
flag (``--connect``) takes one value per line in the file; given on the
command line it replaces the file's list rather than extending it.
"""

import argparse
import configparser
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple, TypeVar

from resolverd import __version__

CONFIG_DIR = Path("/etc/virt-console-proxy")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE_WORDS = {"1", "yes", "true", "on"}
_FALSE_WORDS = {"0", "no", "false", "off"}


class ConfigError(Exception):
    """A configuration problem, with a message that names the key or path at fault."""


S = TypeVar("S")


def keep_running(fresh: S, running: S, restart_only: Sequence[str]) -> Tuple[S, Tuple[str, ...]]:
    """A reload's settings (dataclasses) with the running values of those that take a restart, and which of
    them the files changed (the caller says they were kept)."""
    kept = tuple(name for name in restart_only if getattr(fresh, name) != getattr(running, name))
    return dataclasses.replace(fresh, **{name: getattr(running, name) for name in restart_only}), kept


class _RaisingParser(argparse.ArgumentParser):
    """Reports a usage error as ConfigError instead of exiting: a daemon reloading its settings goes on."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def new_parser(prog: str, description: str, exit_on_error: bool = True) -> argparse.ArgumentParser:
    """A parser that already knows --config, --log-level and --version.

    ``exit_on_error=False``: every usage error (flags, config file, the
    caller's own ``parser.error``) raises ConfigError instead of exiting.
    """
    kind = argparse.ArgumentParser if exit_on_error else _RaisingParser
    parser = kind(prog=prog, description=description)
    parser.add_argument(
        "--config", metavar="FILE", type=Path,
        help=f"INI file with a [{prog}] section using the flags' names as keys "
             f"(default: {CONFIG_DIR / (prog + '.conf')} when it exists)")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info",
        help="least severe message to log (default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse argv over the values of the config file; exit with a usage error on bad input."""
    section = parser.prog
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config", type=Path)
    known, _ = early.parse_known_args(argv)
    path = known.config
    if path is None and (CONFIG_DIR / f"{section}.conf").is_file():
        path = CONFIG_DIR / f"{section}.conf"
    try:
        from_file = read_file(parser, path, section) if path is not None else {}
    except ConfigError as exc:
        parser.error(str(exc))
    repeatable = {a.dest for a in _keyed_actions(parser).values() if isinstance(a, argparse._AppendAction)}
    parser.set_defaults(**{k: v for k, v in from_file.items() if k not in repeatable})
    namespace = parser.parse_args(argv)
    for dest in repeatable:
        if getattr(namespace, dest) is None:
            setattr(namespace, dest, from_file.get(dest, []))
    return namespace


def require(parser: argparse.ArgumentParser, namespace: argparse.Namespace, *dests: str) -> None:
    """Exit with a usage error naming every required setting that neither flag nor file gave."""
    missing = [f"--{d.replace('_', '-')}" for d in dests if getattr(namespace, d) in (None, [], "")]
    if missing:
        parser.error("missing required setting(s): " + ", ".join(missing)
                     + " (give them as flags or in the config file)")


def read_file(parser: argparse.ArgumentParser, path: Path, section: str) -> Dict[str, Any]:
    """The converted values of ``[section]`` in ``path``, keyed by argparse dest."""
    ini = configparser.ConfigParser(interpolation=None, default_section="__no_defaults__")
    try:
        with open(path, encoding="utf-8") as stream:
            ini.read_file(stream)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except configparser.Error as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    unexpected = [s for s in ini.sections() if s != section]
    if unexpected:
        raise ConfigError(f"config file {path}: unknown section [{unexpected[0]}] (expected [{section}])")
    if not ini.has_section(section):
        return {}
    actions = _keyed_actions(parser)
    values: Dict[str, Any] = {}
    for key, raw in ini.items(section):
        action = actions.get(key)
        if action is None:
            raise ConfigError(f"config file {path}: unknown key '{key}' in [{section}]")
        try:
            values[action.dest] = _convert(action, raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"config file {path}: bad value for '{key}': {exc}") from exc
    return values


def _keyed_actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """Every long flag that may appear in a file, keyed by its name without dashes."""
    excluded = {"help", "version", "config"}
    actions = {}
    for action in parser._actions:
        for option in action.option_strings:
            name = option[2:]
            if option.startswith("--") and name not in excluded:
                actions[name] = action
    return actions


def _convert(action: argparse.Action, raw: str) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        word = raw.strip().lower()
        if word not in _TRUE_WORDS | _FALSE_WORDS:
            raise ValueError(f"expected yes or no, got {raw!r}")
        enabled = word in _TRUE_WORDS
        return enabled if isinstance(action, argparse._StoreTrueAction) else not enabled
    if isinstance(action, argparse._AppendAction):
        return [_convert_one(action, line) for line in _lines(raw)]
    return _convert_one(action, raw.strip())


def _convert_one(action: argparse.Action, text: str) -> Any:
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{text!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _lines(raw: str) -> List[str]:
    return [line.strip() for line in raw.splitlines() if line.strip()]

