import json

from proxyd.metrics import RESOLVER_BUCKETS, Aggregate, Failure, WorkerMetrics, render_histogram, valid_snapshot


def worker_with(sessions: int, kind: str = "vnc", to_console: int = 0, failure: Failure = Failure.TLS) -> WorkerMetrics:
    metrics = WorkerMetrics()
    metrics.sessions_open[kind] += sessions
    metrics.sessions_total[kind] += sessions
    metrics.bytes[(kind, "to_console")] += to_console
    metrics.failed(failure)
    metrics.resolver_latency(0.003)
    return metrics


def sample(text: str, line_start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(line_start)).rsplit(" ", 1)[1]


def test_snapshot_is_json_and_counts_what_relays_reported():
    metrics = worker_with(1, to_console=10)
    metrics.relay_moved("vnc", 5, 7)
    snapshot = metrics.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert sorted(snapshot["bytes"]) == [["vnc", "to_client", 7], ["vnc", "to_console", 15]]
    assert valid_snapshot(snapshot)


def test_resolver_latency_buckets_are_upper_inclusive():
    metrics = WorkerMetrics()
    for seconds in (0.001, 0.0011, 99.0):
        metrics.resolver_latency(seconds)
    assert metrics.resolver_buckets[0] == 1 and metrics.resolver_buckets[1] == 1
    assert metrics.resolver_buckets[len(RESOLVER_BUCKETS)] == 1
    assert metrics.resolver_count == 3


def test_aggregate_sums_live_workers_and_keeps_counters_of_dead_ones():
    aggregate = Aggregate()
    aggregate.update(100, worker_with(2, to_console=100).snapshot())
    aggregate.update(200, worker_with(1, kind="serial", failure=Failure.ORIGIN).snapshot())
    text = aggregate.render(workers_alive=2)
    assert sample(text, 'proxyd_sessions_open{type="vnc"}') == "2"
    assert sample(text, 'proxyd_sessions_total{type="serial"}') == "1"
    assert sample(text, 'proxyd_handshake_failures_total{reason="origin"}') == "1"
    assert sample(text, "proxyd_resolver_latency_seconds_count") == "2"
    aggregate.retire(100)
    aggregate.worker_restarts += 1
    text = aggregate.render(workers_alive=1)
    assert sample(text, 'proxyd_sessions_open{type="vnc"}') == "0"  # a gauge of a dead worker goes
    assert sample(text, 'proxyd_sessions_total{type="vnc"}') == "2"  # its counters stay
    assert sample(text, 'proxyd_bytes_total{type="vnc",direction="to_console"}') == "100"
    assert sample(text, "proxyd_worker_restarts_total") == "1"
    assert sample(text, "proxyd_workers") == "1"


def test_a_spice_session_counts_once_and_each_of_its_channels_as_a_channel():
    metrics = WorkerMetrics()
    metrics.relay_started("spice", secondary=False)  # main
    for _ in range(3):  # display, inputs, cursor
        metrics.relay_started("spice", secondary=True)
    metrics.relay_started("vnc", secondary=False)
    metrics.relay_moved("spice", 3, 40)
    metrics.relay_ended("spice", secondary=True)
    aggregate = Aggregate()
    aggregate.update(100, metrics.snapshot())
    text = aggregate.render(workers_alive=1)
    assert [sample(text, f'proxyd_{family}{{type="{kind}"}}') for family in ("sessions_open", "channels_open",
                                                                             "sessions_total", "channels_total")
            for kind in ("spice", "vnc")] == ["1", "1", "3", "1", "1", "1", "4", "1"]
    assert sample(text, 'proxyd_bytes_total{type="spice",direction="to_client"}') == "40"
    metrics.relay_ended("spice", secondary=False)
    aggregate.update(100, metrics.snapshot())
    assert sample(aggregate.render(workers_alive=1), 'proxyd_sessions_open{type="spice"}') == "0"


def test_a_snapshot_without_the_channel_counters_is_dropped():
    snapshot = WorkerMetrics().snapshot()
    del snapshot["channels_open"]
    assert not valid_snapshot(snapshot)


def test_every_failure_reason_is_exported_even_at_zero():
    text = Aggregate().render(workers_alive=0)
    for reason in Failure:
        assert f'proxyd_handshake_failures_total{{reason="{reason.value}"}} 0' in text


def test_histogram_text_is_cumulative_with_inf():
    text = render_histogram("x_seconds", "help", (0.1, 1.0), [1, 2, 3], 4.5, 6)
    assert text.splitlines() == [
        "# HELP x_seconds help", "# TYPE x_seconds histogram",
        'x_seconds_bucket{le="0.1"} 1', 'x_seconds_bucket{le="1.0"} 3', 'x_seconds_bucket{le="+Inf"} 6',
        "x_seconds_sum 4.5", "x_seconds_count 6"]


def test_malformed_snapshots_are_recognised():
    good = WorkerMetrics().snapshot()
    assert valid_snapshot(good)
    assert not valid_snapshot(None)
    assert not valid_snapshot({})
    assert not valid_snapshot(dict(good, bytes=[["vnc", "to_console"]]))
    assert not valid_snapshot(dict(good, resolver={"buckets": [0], "sum": 0, "count": 0}))
    assert not valid_snapshot(dict(good, open=[]))
