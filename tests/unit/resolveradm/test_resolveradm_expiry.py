"""--expires: durations, RFC 3339 times, 'never', and every way to get it wrong."""

import argparse
from datetime import datetime, timedelta, timezone

import pytest

from resolveradm.expiry import Expiry, ExpiryError, expiry_argument, parse_expiry

NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, seconds", [
    ("45s", 45), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400),
    ("1d2h3m4s", 93784), (" 10m ", 600), ("0h5m", 300),
])
def test_durations_count_from_now(text, seconds):
    assert parse_expiry(text, NOW) == Expiry(NOW + timedelta(seconds=seconds))


def test_a_duration_from_a_zoned_now_is_given_in_utc():
    plus_one = datetime(2026, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    expiry = parse_expiry("1h", plus_one)
    assert expiry.at == datetime(2026, 1, 31, 13, 0, tzinfo=timezone.utc) and expiry.at.tzinfo == timezone.utc


@pytest.mark.parametrize("text, expected", [
    ("2026-02-01T00:00:00Z", datetime(2026, 2, 1, tzinfo=timezone.utc)),
    ("2026-01-31T14:00:00+01:00", datetime(2026, 1, 31, 13, 0, tzinfo=timezone.utc)),
])
def test_rfc3339_times(text, expected):
    assert parse_expiry(text, NOW) == Expiry(expected)


def test_never_means_no_expiry():
    assert parse_expiry("never", NOW) == Expiry(None)


@pytest.mark.parametrize("text, message", [
    ("", "is not a duration"),
    ("soon", "is not a duration"),
    ("30", "is not a duration"),
    ("30M", "is not a duration"),
    ("1y", "is not a duration"),
    ("-5m", "is not a duration"),
    ("1.5h", "is not a duration"),
    ("m30", "is not a duration"),
    ("0m", "is no time at all"),
    ("0h0m", "is no time at all"),
    ("2026-02-01T00:00:00", "is not a duration"),  # no zone: ambiguous
    ("2026-02-01", "is not a duration"),
    ("2026-01-31T12:00:00Z", "is in the past"),
    ("2020-01-01T00:00:00Z", "is in the past"),
    ("99999999999999d", "too far in the future"),
    ("Never", "is not a duration"),
])
def test_refused(text, message):
    with pytest.raises(ExpiryError) as caught:
        parse_expiry(text, NOW)
    assert message in str(caught.value)


def test_the_argparse_type_reports_a_usage_error_and_counts_from_the_clock():
    with pytest.raises(argparse.ArgumentTypeError, match="is in the past"):
        expiry_argument("2000-01-01T00:00:00Z")
    before = datetime.now(timezone.utc)
    expiry = expiry_argument("1h")
    assert before + timedelta(hours=1) <= expiry.at <= datetime.now(timezone.utc) + timedelta(hours=1)
