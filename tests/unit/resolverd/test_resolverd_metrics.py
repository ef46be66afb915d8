from resolverd.metrics import CounterSet, Family, render


def test_counters_start_at_zero_for_known_values_and_render_sorted():
    lookups = CounterSet("x_lookups_total", "Look-ups.", "outcome", ["ok", "unknown"])
    lookups.inc("unknown")
    lookups.inc("unknown")
    lookups.inc("expired")
    assert render([lookups.family()]) == (
        "# HELP x_lookups_total Look-ups.\n"
        "# TYPE x_lookups_total counter\n"
        'x_lookups_total{outcome="expired"} 1\n'
        'x_lookups_total{outcome="ok"} 0\n'
        'x_lookups_total{outcome="unknown"} 2\n')


def test_gauges_labels_are_escaped_and_floats_kept():
    family = Family("g", "gauge", "Help with \\ and\nnewline.", [
        ({"uri": 'qemu+ssh://u@h/system?x="1"\\n'}, 1.0), ({}, 0.25)])
    assert render([family]).splitlines() == [
        "# HELP g Help with \\\\ and\\nnewline.",
        "# TYPE g gauge",
        'g{uri="qemu+ssh://u@h/system?x=\\"1\\"\\\\n"} 1',
        "g 0.25",
    ]
