import logging

from resolverd import logs


def test_token_ref_is_short_stable_and_hides_the_token():
    token = "Zr0m9cG0yYk1N9u2hH8tZr0m9cG0yYk1N9u2hH8t"
    ref = logs.token_ref(token)
    assert ref == logs.token_ref(token) != logs.token_ref(token + "x")
    assert ref.startswith("tok-") and len(ref) == 16 and token[:6] not in ref


def test_journal_formatter_prefixes_every_line_with_its_priority():
    record = logging.LogRecord("proxyd.worker", logging.WARNING, __file__, 1, "one\ntwo", None, None)
    assert logs.JournalFormatter("%(name)s: %(message)s").format(record) == "<4>proxyd.worker: one\n<4>two"


def test_setup_uses_journal_format_under_systemd(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    logs.setup("debug")
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    assert isinstance(root.handlers[0].formatter, logs.JournalFormatter)
