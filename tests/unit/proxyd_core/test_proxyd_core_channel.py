import pytest

from proxyd import channel


def test_messages_keep_their_boundaries(ends):
    master_end, worker_end = ends
    assert channel.send(worker_end, {"kind": "metrics", "n": 1})
    assert channel.send(worker_end, {"kind": "metrics", "n": 2})
    assert channel.receive(master_end) == {"kind": "metrics", "n": 1}
    assert channel.receive(master_end) == {"kind": "metrics", "n": 2}
    assert channel.receive(master_end) is None


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"no": "kind"}', b'{"kind": 3}'])
def test_bad_messages_are_dropped(ends, raw):
    master_end, worker_end = ends
    worker_end.send(raw)
    assert channel.receive(master_end) is None


def test_oversized_message_is_refused_before_sending(ends):
    _, worker_end = ends
    with pytest.raises(ValueError, match="over the channel"):
        channel.send(worker_end, {"kind": "x", "pad": "a" * channel.MAX_MESSAGE})


def test_end_of_channel_is_reported(ends):
    master_end, worker_end = ends
    worker_end.close()
    with pytest.raises(channel.ChannelClosed):
        channel.receive(master_end)
    assert not channel.send(master_end, {"kind": "metrics"})


def test_full_channel_drops_instead_of_blocking(ends):
    _, worker_end = ends
    sent = 0
    while channel.send(worker_end, {"kind": "metrics", "pad": "x" * 4000}):
        sent += 1
        assert sent < 100000
    assert sent > 0
