from resolverd.tickets import MAX_TICKET_LENGTH, BridgeRoute, TicketBook

ROUTE = BridgeRoute("qemu:///session", "0b8a4c1e-0000-4000-8000-000000000001", "serial0")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_opens_its_route_once():
    book = TicketBook()
    ticket = book.issue(ROUTE)
    assert len(ticket) >= 43 and ticket.isascii()
    assert book.redeem(ticket) == ROUTE
    assert book.redeem(ticket) is None


def test_tickets_are_distinct():
    book = TicketBook()
    assert len({book.issue(ROUTE) for _ in range(100)}) == 100


def test_a_ticket_expires():
    clock = FakeClock()
    book = TicketBook(lifetime=30, clock=clock)
    ticket = book.issue(ROUTE)
    clock.now += 30
    assert book.redeem(ticket) is None


def test_expired_tickets_are_purged_when_new_ones_are_issued():
    clock = FakeClock()
    book = TicketBook(lifetime=30, clock=clock)
    book.issue(ROUTE)
    book.issue(ROUTE)
    clock.now += 31
    book.issue(ROUTE)
    assert len(book) == 1


def test_wrong_empty_long_and_odd_tickets_open_nothing():
    book = TicketBook()
    ticket = book.issue(ROUTE)
    for attempt in ["", ticket[:-1], ticket + "x", "x" * (MAX_TICKET_LENGTH + 1), "\udcff", "é"]:
        assert book.redeem(attempt) is None
    assert book.redeem(ticket) == ROUTE
