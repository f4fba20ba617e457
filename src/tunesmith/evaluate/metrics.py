"""The metric registry: metrics are fed batch by batch and each task picks its defaults.

A metric keeps only sufficient statistics (n-gram counts, score sums, label-pair counts), never the rows
themselves, so its memory does not grow with the eval set. Adding a metric is one class with
``@register("name")`` in a module that ``_register_builtins`` imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tunesmith.config import Task
from tunesmith.errors import TunesmithError


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

TASK_METRICS: dict[Task, tuple[str, ...]] = {
    "causal_lm": ("bleu", "chrf", "rouge", "exact_match"),
    "seq2seq": ("bleu", "chrf", "rouge", "exact_match"),
    "classification": ("accuracy", "macro_f1"),
}


def register(name: str) -> Callable[[MetricFactory], MetricFactory]:
    """Class decorator: make a metric available under ``name``."""

    def decorate(factory: MetricFactory) -> MetricFactory:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = factory
        return factory

    return decorate


def available_metrics() -> list[str]:
    """Every registered metric name."""
    _register_builtins()
    return sorted(METRICS)


def default_metrics(task: Task) -> tuple[str, ...]:
    """The metrics a task reports when the config names none."""
    return TASK_METRICS[task]


def build_metrics(names: Sequence[str], key: str = "eval.metrics") -> dict[str, Metric]:
    """Fresh metric instances by name; an unknown name is a TunesmithError that names ``key``."""
    _register_builtins()
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise TunesmithError(f"{key}: unknown metric {unknown[0]!r}", hint=f"choose from {', '.join(sorted(METRICS))}")
    return {name: METRICS[name]() for name in names}


def _register_builtins() -> None:
    # The built-in modules register themselves on import; importing here (not at the top) avoids a cycle.
    from tunesmith.evaluate import label_metrics, text_metrics  # noqa: F401
