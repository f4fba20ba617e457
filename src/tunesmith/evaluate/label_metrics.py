"""Classification metrics through scikit-learn: they take predicted labels and gold labels.

Rows are kept as counts of (gold, predicted) pairs, bounded by labels², not rows; scikit-learn then scores
the distinct pairs weighted by their counts, which gives the same numbers as scoring every row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tunesmith.evaluate.metrics import build_metrics, register
from tunesmith.metric_specs import task_metrics


class _LabelPairs:
    """(gold, predicted) label pairs and how often each occurred."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def update(self, predictions: Sequence[str], references: Sequence[Any]) -> None:
        self.counts.update((str(gold), str(pred)) for pred, gold in zip(predictions, references, strict=True))

    def columns(self) -> tuple[list[str], list[str], list[int]]:
        pairs = list(self.counts.items())
        return [g for (g, _), _ in pairs], [p for (_, p), _ in pairs], [n for _, n in pairs]

    def state(self) -> dict[str, Any]:
        return {"pairs": [[gold, pred, n] for (gold, pred), n in sorted(self.counts.items())]}


@register("accuracy")
class Accuracy:
    """Share of rows whose predicted label is the gold label (sklearn.metrics.accuracy_score)."""

    def __init__(self) -> None:
        self._pairs = _LabelPairs()

    def update(self, predictions: Sequence[str], references: Sequence[Any]) -> None:
        """Add a batch of predicted labels and gold labels."""
        self._pairs.update(predictions, references)

    def compute(self) -> dict[str, float]:
        """{"accuracy": 0-1}."""
        from sklearn.metrics import accuracy_score

        gold, pred, weight = self._pairs.columns()
        return {"accuracy": float(accuracy_score(gold, pred, sample_weight=weight)) if weight else 0.0}

    def state(self) -> dict[str, Any]:
        """Counts of (gold, predicted) pairs."""
        return self._pairs.state()


@register("macro_f1")
class MacroF1:
    """F1 per label averaged with equal weight per label (sklearn.metrics.f1_score, average="macro")."""

    def __init__(self) -> None:
        self._pairs = _LabelPairs()

    def update(self, predictions: Sequence[str], references: Sequence[Any]) -> None:
        """Add a batch of predicted labels and gold labels."""
        self._pairs.update(predictions, references)

    def compute(self) -> dict[str, float]:
        """{"macro_f1": 0-1}; a label never predicted counts as F1 0."""
        from sklearn.metrics import f1_score

        gold, pred, weight = self._pairs.columns()
        if not weight:
            return {"macro_f1": 0.0}
        return {"macro_f1": float(f1_score(gold, pred, average="macro", sample_weight=weight, zero_division=0))}

    def state(self) -> dict[str, Any]:
        """Counts of (gold, predicted) pairs."""
        return self._pairs.state()


def label_scores(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted against gold labels in one call."""
    scores: dict[str, float] = {}
    for metric in build_metrics(task_metrics("classification")).values():
        metric.update(predicted, gold)
        scores.update(metric.compute())
    return scores
