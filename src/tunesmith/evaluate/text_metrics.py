"""Generation metrics through their maintained libraries: sacrebleu (BLEU, chrF) and rouge-score.

Scales are the libraries' own: BLEU and chrF 0-100, ROUGE and exact match 0-1. A metric that saw no row (a
conversation eval whose every reference turn calls a tool has no text to compare) is NaN, not 0: eval.json
writes it as null and the table as "-", as the tool-call metrics do for a zero denominator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tunesmith.evaluate.metrics import register


class _CorpusStatistics:
    """A sacrebleu metric accumulated batch by batch.

    sacrebleu's corpus score is a function of per-segment statistics summed over the corpus (n-gram matches,
    lengths), so summing them batch by batch and scoring at the end gives exactly ``corpus_score`` on all rows.
    ``_extract_corpus_statistics`` / ``_compute_score_from_stats`` are the hooks sacrebleu's own
    significance tests use for this; there is no public name for them.
    """

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.totals: list[float] = []

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if not predictions:
            return
        rows = self.metric._extract_corpus_statistics(list(predictions), reference_streams(references))
        for row in rows:
            self.totals = [a + b for a, b in zip(self.totals, row, strict=True)] if self.totals else list(row)

    def score(self) -> float:
        return float(self.metric._compute_score_from_stats(self.totals).score) if self.totals else math.nan


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Rows of references -> sacrebleu's reference streams; ``None`` pads rows with fewer references."""
    width = max((len(refs) for refs in references), default=0)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]


@register("bleu")
class Bleu:
    """Corpus BLEU (sacrebleu defaults: 13a tokenizer, exponential smoothing), every reference counted."""

    def __init__(self) -> None:
        from sacrebleu.metrics import BLEU

        self._corpus = _CorpusStatistics(BLEU())

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        """Add a batch of predictions and their references."""
        self._corpus.update(predictions, references)

    def compute(self) -> dict[str, float]:
        """{"bleu": corpus BLEU, 0-100}."""
        return {"bleu": self._corpus.score()}

    def state(self) -> dict[str, Any]:
        """Summed lengths and n-gram matches / totals."""
        return {"totals": list(self._corpus.totals)}


@register("chrf")
class Chrf:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2), best reference per row."""

    def __init__(self) -> None:
        from sacrebleu.metrics import CHRF

        self._corpus = _CorpusStatistics(CHRF())

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        """Add a batch of predictions and their references."""
        self._corpus.update(predictions, references)

    def compute(self) -> dict[str, float]:
        """{"chrf": corpus chrF, 0-100}."""
        return {"chrf": self._corpus.score()}

    def state(self) -> dict[str, Any]:
        """Summed character n-gram counts and matches."""
        return {"totals": list(self._corpus.totals)}


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@register("rouge")
class Rouge:
    """ROUGE-1/2/L F-measure (rouge-score, Porter stemmer), best over the references, averaged over rows."""

    def __init__(self) -> None:
        from rouge_score.rouge_scorer import RougeScorer

        self._scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
        self._sums = dict.fromkeys(ROUGE_TYPES, 0.0)
        self._rows = 0

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        """Score each row against its best reference and add it to the running sums."""
        for prediction, refs in zip(predictions, references, strict=True):
            scores = self._scorer.score_multi(list(refs), prediction)
            for kind in ROUGE_TYPES:
                self._sums[kind] += scores[kind].fmeasure
            self._rows += 1

    def compute(self) -> dict[str, float]:
        """Mean F-measure per ROUGE type, 0-1 (NaN before any row)."""
        return {kind: total / self._rows if self._rows else math.nan for kind, total in self._sums.items()}

    def state(self) -> dict[str, Any]:
        """F-measure sums and the row count."""
        return {"sums": dict(self._sums), "rows": self._rows}


@register("exact_match")
class ExactMatch:
    """Share of rows whose prediction equals one of its references (whitespace runs collapsed)."""

    def __init__(self) -> None:
        self._hits = 0
        self._rows = 0

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        """Count the rows that match a reference."""
        for prediction, refs in zip(predictions, references, strict=True):
            self._hits += _normalized(prediction) in {_normalized(ref) for ref in refs}
            self._rows += 1

    def compute(self) -> dict[str, float]:
        """{"exact_match": share of matching rows, 0-1 (NaN before any row)}."""
        return {"exact_match": self._hits / self._rows if self._rows else math.nan}

    def state(self) -> dict[str, Any]:
        """Matching rows and the row count."""
        return {"hits": self._hits, "rows": self._rows}


def _normalized(text: str) -> str:
    # A trailing newline or doubled space is not a different answer.
    return " ".join(text.split())
