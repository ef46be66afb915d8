"""``--expires``: a duration from now (30m, 2h, 1d, 1h30m) or an RFC 3339 time, as an aware UTC datetime."""

import argparse
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from resolverd.metadata import MetadataError, parse_timestamp

NEVER = "never"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:[0-9]+[smhdw])+")
_PART = re.compile(r"([0-9]+)([smhdw])")
_HINT = ("a duration such as 30m, 2h, 1d or 1h30m, an RFC 3339 time with a zone such as "
         f"2026-01-31T18:00:00Z, or {NEVER!r}")


class ExpiryError(ValueError):
    """A --expires value that names no future moment; the message says what would."""


@dataclass(frozen=True)
class Expiry:
    """What --expires asked for: a moment, or no expiry at all (``at`` is None for 'never')."""

    at: Optional[datetime]


def parse_expiry(text: str, now: datetime) -> Expiry:
    """The moment ``text`` names, relative to ``now`` (aware) for a duration."""
    text = text.strip()
    if text == NEVER:
        return Expiry(None)
    if _DURATION.fullmatch(text):
        seconds = sum(int(amount) * _UNIT_SECONDS[unit] for amount, unit in _PART.findall(text))
        if seconds == 0:
            raise ExpiryError(f"{text!r} is no time at all; give {_HINT}")
        try:
            return Expiry((now + timedelta(seconds=seconds)).astimezone(timezone.utc))
        except OverflowError:
            raise ExpiryError(f"{text!r} is too far in the future") from None
    try:
        moment = parse_timestamp(text)
    except MetadataError:
        raise ExpiryError(f"{text!r} is not {_HINT}") from None
    if moment <= now:
        raise ExpiryError(f"{text!r} is in the past")
    return Expiry(moment)


def expiry_argument(text: str) -> Expiry:
    """parse_expiry against the current time, for argparse."""
    try:
        return parse_expiry(text, datetime.now(timezone.utc))
    except ExpiryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
