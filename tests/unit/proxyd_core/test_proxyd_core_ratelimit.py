from proxyd.ratelimit import FailedAttempts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_barred_for_the_penalty():
    clock = Clock()
    attempts = FailedAttempts(burst=3, window=60, penalty=30, clock=clock)
    for _ in range(2):
        attempts.failed("192.0.2.1")
        assert attempts.barred_for("192.0.2.1") == 0
    attempts.failed("192.0.2.1")
    assert attempts.barred_for("192.0.2.1") == 30
    clock.now += 29
    assert attempts.barred_for("192.0.2.1") == 1
    clock.now += 1
    assert attempts.barred_for("192.0.2.1") == 0


def test_only_failures_within_the_window_count():
    clock = Clock()
    attempts = FailedAttempts(burst=3, window=60, penalty=30, clock=clock)
    for _ in range(10):
        attempts.failed("192.0.2.1")
        clock.now += 30.0  # never three within 60 s
        assert attempts.barred_for("192.0.2.1") == 0


def test_quick_failures_bar_even_as_time_passes():
    clock = Clock()
    attempts = FailedAttempts(burst=5, window=60, penalty=30, clock=clock)
    for _ in range(5):
        attempts.failed("192.0.2.1")
        clock.now += 0.4
    assert attempts.barred_for("192.0.2.1") > 29


def test_addresses_are_independent_and_ipv6_is_grouped_by_64():
    clock = Clock()
    attempts = FailedAttempts(burst=2, window=60, penalty=30, clock=clock)
    attempts.failed("2001:db8:1:2::1")
    attempts.failed("2001:db8:1:2::ffff")
    assert attempts.barred_for("2001:db8:1:2::abcd") == 30
    assert attempts.barred_for("2001:db8:1:3::1") == 0
    assert attempts.barred_for("192.0.2.1") == 0


def test_ipv4_mapped_addresses_count_as_ipv4():
    clock = Clock()
    attempts = FailedAttempts(burst=1, window=60, penalty=30, clock=clock)
    attempts.failed("::ffff:192.0.2.7")
    assert attempts.barred_for("192.0.2.7") == 30


def test_memory_is_bounded_oldest_forgotten():
    clock = Clock()
    attempts = FailedAttempts(burst=1, window=60, penalty=30, max_addresses=2, clock=clock)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        attempts.failed(address)
    assert attempts.barred_for("192.0.2.1") == 0
    assert attempts.barred_for("192.0.2.3") == 30


def test_a_bar_from_elsewhere_holds_and_never_shortens_a_longer_one():
    clock = Clock()
    attempts = FailedAttempts(burst=3, window=60, penalty=30, clock=clock)
    attempts.bar("2001:db8::1", 10)
    assert attempts.barred_for("2001:db8::2") == 10  # the same /64
    for _ in range(3):
        attempts.failed("192.0.2.1")
    attempts.bar("192.0.2.1", 5)
    assert attempts.barred_for("192.0.2.1") == 30
