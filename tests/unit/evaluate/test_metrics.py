"""Each metric against its library called directly on the same strings; the registry; bounded state."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.evaluate.loss import LossTotals
from tunesmith.evaluate.metrics import METRICS, available_metrics, build_metrics, register
from tunesmith.evaluate.text_metrics import reference_streams
from tunesmith.metric_specs import METRIC_SPECS, MetricSpec, default_metrics, lower_is_better

PREDICTIONS = [
    "Hey students! Our coffee keeps you sharp. Grab a cup!",
    "Run farther on clouds with our new shoes.",
    "This laptop never blinks.",
    "Slow mornings deserve great tea.",
    "",
]
REFERENCES = [
    ["Hey students! Our coffee keeps you sharp through every lecture. Grab a cup today!", "Coffee for students."],
    ["Run farther on clouds. Our new shoes cushion every stride. Lace up now!"],
    ["Frames for days: this laptop never blinks. Level up today!", "Level up.", "This laptop never blinks."],
    ["Slow mornings deserve great tea. Steep a pot of calm."],
    ["Beat the traffic on two wheels."],
]


def _fed_in_batches(name: str, predictions: list[Any], references: list[Any], batch: int = 2) -> dict[str, float]:
    metric = build_metrics([name])[name]
    for start in range(0, len(predictions), batch):
        metric.update(predictions[start : start + batch], references[start : start + batch])
    return metric.compute()


def test_bleu_batched_equals_sacrebleu_corpus_score() -> None:
    from sacrebleu.metrics import BLEU

    expected = BLEU().corpus_score(PREDICTIONS, reference_streams(REFERENCES)).score
    assert expected > 0
    assert _fed_in_batches("bleu", PREDICTIONS, REFERENCES)["bleu"] == pytest.approx(expected, abs=1e-9)


def test_chrf_batched_equals_sacrebleu_corpus_score() -> None:
    from sacrebleu.metrics import CHRF

    expected = CHRF().corpus_score(PREDICTIONS, reference_streams(REFERENCES)).score
    assert expected > 0
    assert _fed_in_batches("chrf", PREDICTIONS, REFERENCES)["chrf"] == pytest.approx(expected, abs=1e-9)


def test_bleu_single_reference_equals_sacrebleu() -> None:
    from sacrebleu.metrics import BLEU

    single = [refs[:1] for refs in REFERENCES]
    expected = BLEU().corpus_score(PREDICTIONS, [[refs[0] for refs in single]]).score
    assert _fed_in_batches("bleu", PREDICTIONS, single, batch=3)["bleu"] == pytest.approx(expected, abs=1e-9)


def test_more_references_can_only_help_bleu() -> None:
    single = [refs[:1] for refs in REFERENCES]
    assert (
        _fed_in_batches("bleu", PREDICTIONS, REFERENCES)["bleu"] > _fed_in_batches("bleu", PREDICTIONS, single)["bleu"]
    )


def test_rouge_is_the_mean_of_rouge_score_best_reference_fmeasure() -> None:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = [scorer.score_multi(refs, pred) for pred, refs in zip(PREDICTIONS, REFERENCES, strict=True)]
    got = _fed_in_batches("rouge", PREDICTIONS, REFERENCES)
    for kind in ("rouge1", "rouge2", "rougeL"):
        expected = sum(row[kind].fmeasure for row in rows) / len(rows)
        assert got[kind] == pytest.approx(expected, abs=1e-12)
    assert got["rouge1"] > 0


def test_exact_match_counts_any_reference_and_ignores_whitespace_runs() -> None:
    predictions = ["This laptop never blinks.", "  Slow mornings deserve great tea. ", "nope"]
    references = [REFERENCES[2], ["Slow  mornings deserve great tea."], ["yes"]]
    assert _fed_in_batches("exact_match", predictions, references)["exact_match"] == pytest.approx(2 / 3)


def test_exact_match_is_case_sensitive() -> None:
    assert _fed_in_batches("exact_match", ["Yes"], [["yes"]])["exact_match"] == 0.0


@pytest.mark.parametrize("name", ["bleu", "chrf", "rouge", "exact_match"])
def test_a_text_metric_with_no_row_to_score_is_undefined_not_zero(name: str) -> None:
    # A conversation eval whose reference turns all call tools feeds the text metrics empty batches.
    scores = _fed_in_batches(name, [], [])
    assert scores and all(math.isnan(value) for value in scores.values()), scores


def test_accuracy_and_macro_f1_equal_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = random.Random(0)
    labels = ["positive", "negative", "neutral"]
    gold = [rng.choice(labels) for _ in range(101)]
    pred = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    assert _fed_in_batches("accuracy", pred, gold, batch=7)["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    expected_f1 = f1_score(gold, pred, average="macro", zero_division=0)
    assert _fed_in_batches("macro_f1", pred, gold, batch=7)["macro_f1"] == pytest.approx(expected_f1)


def test_macro_f1_counts_a_never_predicted_label_as_zero() -> None:
    from sklearn.metrics import f1_score

    gold, pred = ["a", "a", "b", "c"], ["a", "a", "a", "a"]
    expected = f1_score(gold, pred, average="macro", zero_division=0)
    assert _fed_in_batches("macro_f1", pred, gold)["macro_f1"] == pytest.approx(expected)


def test_each_task_has_registered_defaults() -> None:
    assert default_metrics("causal_lm") == ("bleu", "chrf", "rouge", "exact_match")
    assert default_metrics("seq2seq") == default_metrics("causal_lm")
    assert default_metrics("classification") == ("accuracy", "macro_f1")
    for task in ("causal_lm", "seq2seq", "classification"):
        assert set(default_metrics(task)) <= set(available_metrics())


def test_every_spec_is_implemented_and_reports_exactly_its_keys() -> None:
    assert set(available_metrics()) == set(METRIC_SPECS)
    for name, metric in build_metrics(list(METRIC_SPECS)).items():
        assert tuple(metric.compute()) == METRIC_SPECS[name].keys, name


@pytest.mark.parametrize(
    ("key", "lower"),
    [
        ("eval_loss", True),
        ("loss", True),
        ("train_loss", True),
        ("eval_perplexity", True),
        ("eval_runtime", True),
        ("eval_bleu", False),
        ("rougeL", False),
        ("tuned_accuracy", False),
        ("base.eval_loss", True),
        ("macro_f1", False),
    ],
)
def test_one_rule_decides_the_direction_of_every_score(key: str, lower: bool) -> None:
    assert lower_is_better(key) is lower


def test_unknown_metric_names_the_config_key() -> None:
    with pytest.raises(TunesmithError, match=r"eval\.metrics: unknown metric 'blue'"):
        build_metrics(["bleu", "blue"])


def test_register_adds_a_metric_and_refuses_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tunesmith.evaluate.metrics.METRICS", dict(METRICS))
    with pytest.raises(ValueError, match="no MetricSpec"):
        register("length")(object)  # type: ignore[arg-type]
    monkeypatch.setitem(METRIC_SPECS, "length", MetricSpec("length", ("length",), True, ("causal_lm",)))

    @register("length")
    class Length:
        def __init__(self) -> None:
            self.total = 0

        def update(self, predictions: Any, references: Any) -> None:
            self.total += sum(len(p) for p in predictions)

        def compute(self) -> dict[str, float]:
            return {"length": float(self.total)}

        def state(self) -> dict[str, Any]:
            return {"total": self.total}

    assert _fed_in_batches("length", ["ab", "c"], [["x"], ["y"]]) == {"length": 3.0}
    with pytest.raises(ValueError, match="registered twice"):
        register("length")(Length)


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_leaves(v) for v in value)
    return 1


def _synthetic_rows(n: int) -> tuple[list[str], list[list[str]], list[str], list[str]]:
    rng = random.Random(n)
    words = ["coffee", "tea", "shoes", "laptop", "run", "fast", "great", "today", "now", "students", "gamers"]
    texts = [" ".join(rng.choices(words, k=6)) for _ in range(n)]
    refs = [[" ".join(rng.choices(words, k=6)) for _ in range(rng.randint(1, 3))] for _ in range(n)]
    labels = ["a", "b", "c"]
    return texts, refs, [rng.choice(labels) for _ in range(n)], [rng.choice(labels) for _ in range(n)]


def _state_after(name: str, rows: int, batch: int = 50) -> dict[str, Any]:
    texts, refs, pred_labels, gold_labels = _synthetic_rows(rows)
    predictions, references = (pred_labels, gold_labels) if name in ("accuracy", "macro_f1") else (texts, refs)
    metric = build_metrics([name])[name]
    for start in range(0, rows, batch):
        metric.update(predictions[start : start + batch], references[start : start + batch])
    metric.compute()
    return metric.state()


@pytest.mark.parametrize("name", ["bleu", "chrf", "rouge", "exact_match", "accuracy", "macro_f1"])
def test_metric_state_does_not_grow_with_rows(name: str) -> None:
    small, large = _state_after(name, 200), _state_after(name, 2000)
    assert _leaves(small) == _leaves(large)
    assert small != large  # the state did take in the extra rows


def test_loss_totals_keep_two_numbers_whatever_the_row_count() -> None:
    totals = LossTotals()
    for _ in range(2000):
        totals.add(20.0, 10)
    assert vars(totals) == {"nll": pytest.approx(40000.0), "tokens": 20000}
    assert totals.compute()["loss"] == pytest.approx(2.0)
    assert LossTotals().compute() == {}
