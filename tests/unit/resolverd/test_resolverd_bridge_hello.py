import pytest

from resolverd.bridge import HelloError, parse_hello


def test_the_hello_carries_the_ticket():
    assert parse_hello(b"LCPBRIDGE1 abc-DEF_123") == "abc-DEF_123"
    assert parse_hello(b"LCPBRIDGE1 abc\r") == "abc"


@pytest.mark.parametrize("line", [
    b"", b"LCPBRIDGE1", b"LCPBRIDGE1 ", b"LCPBRIDGE2 abc", b"GET / HTTP/1.1", b"LCPBRIDGE1 a b",
    b"LCPBRIDGE1 \xff\xfe", b"lcpbridge1 abc",
])
def test_anything_else_is_refused(line):
    with pytest.raises(HelloError):
        parse_hello(line)
