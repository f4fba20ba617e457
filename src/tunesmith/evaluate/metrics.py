"""The metric registry: metrics are fed batch by batch and each task picks its defaults.

A metric keeps only sufficient statistics (n-gram counts, score sums, label-pair counts), never the rows
themselves, so its memory does not grow with the eval set. Adding a metric is its facts in
``tunesmith.metric_specs`` and one class with ``@register("name")`` in a module the package imports
(``tunesmith/evaluate/__init__.py``), so the registry is complete as soon as ``tunesmith.evaluate`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tunesmith.errors import TunesmithError
from tunesmith.metric_specs import METRIC_SPECS


class Metric(Protocol):
    """A metric computed from batches.

    Text metrics get one list of reference strings per prediction; label metrics (classification) get
    one gold label per prediction.
    """

    def update(self, predictions: Sequence[str], references: Sequence[Any]) -> None:
        """Add one batch to the running statistics."""
        ...

    def compute(self) -> dict[str, float]:
        """The scores over every batch seen so far (one metric may report several, e.g. rouge1/2/L)."""
        ...

    def state(self) -> dict[str, Any]:
        """The statistics held so far, as plain JSON-able values; their size never depends on the row count."""
        ...


MetricFactory = Callable[[], Metric]

METRICS: dict[str, MetricFactory] = {}


def register(name: str) -> Callable[[MetricFactory], MetricFactory]:
    """Class decorator: make a metric available under ``name``."""

    def decorate(factory: MetricFactory) -> MetricFactory:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        if name not in METRIC_SPECS:
            raise ValueError(f"metric {name!r} has no MetricSpec in tunesmith.metric_specs")
        METRICS[name] = factory
        return factory

    return decorate


def available_metrics() -> list[str]:
    """Every registered metric name."""
    return sorted(METRICS)


def build_metrics(names: Sequence[str], key: str = "eval.metrics") -> dict[str, Metric]:
    """Fresh metric instances by name; an unknown name is a TunesmithError that names ``key``."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise TunesmithError(f"{key}: unknown metric {unknown[0]!r}", hint=f"choose from {', '.join(sorted(METRICS))}")
    return {name: METRICS[name]() for name in names}
