"""Prometheus metrics in the text exposition format (version 0.0.4), rendered without a client library.

resolverd runs one process, so counters live in memory; gauges are read when
``/metrics`` is scraped.
"""

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Tuple

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


@dataclass
class Family:
    name: str
    kind: str  # "counter" | "gauge"
    help: str
    samples: List[Tuple[Labels, float]] = field(default_factory=list)


class CounterSet:
    """Thread-safe counters of one labelled family, e.g. look-ups by outcome."""

    def __init__(self, name: str, help_text: str, label: str, known: Iterable[str] = ()) -> None:
        self._name, self._help, self._label = name, help_text, label
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = Counter({value: 0 for value in known})

    def inc(self, value: str) -> None:
        with self._lock:
            self._counts[value] += 1

    def family(self) -> Family:
        with self._lock:
            samples = [({self._label: value}, float(n)) for value, n in sorted(self._counts.items())]
        return Family(self._name, "counter", self._help, samples)


def render(families: Iterable[Family]) -> str:
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
