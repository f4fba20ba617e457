"""What each metric is, stated once: the scores it reports, which way is better, and the tasks it serves.

Everything that ranks, sorts, selects or draws an arrow reads these facts (checkpoint selection, the search's
mode, the registry's sort, the eval and compare tables). The implementations live in ``tunesmith.evaluate``
and register under these names; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config import Task

GENERATION_TASKS: tuple[Task, ...] = ("causal_lm", "seq2seq")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its ``eval.metrics`` name, the score keys it reports, its direction and its tasks."""

    name: str
    keys: tuple[str, ...]
    higher_is_better: bool
    tasks: tuple[Task, ...]
    default: bool = True  # reported by `tunesmith eval` when eval.metrics names none


METRIC_SPECS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("bleu", ("bleu",), True, GENERATION_TASKS),
        MetricSpec("chrf", ("chrf",), True, GENERATION_TASKS),
        MetricSpec("rouge", ("rouge1", "rouge2", "rougeL"), True, GENERATION_TASKS),
        MetricSpec("exact_match", ("exact_match",), True, GENERATION_TASKS),
        MetricSpec("accuracy", ("accuracy",), True, ("classification",)),
        MetricSpec("macro_f1", ("macro_f1",), True, ("classification",)),
        MetricSpec(
            "tool_calls",
            ("call_decision_accuracy", "call_exact_match", "call_argument_f1", "call_json_validity"),
            True,
            ("causal_lm",),
            default=False,  # a conversation eval adds it (evaluate/conversation.py); elsewhere name it in eval.metrics
        ),
    )
}

# Scores that are not computed by a registered metric but ranked all the same: they fall as a model improves.
LOWER_IS_BETTER_KEYS = frozenset({"loss", "perplexity", "train_loss", "runtime"})

# Prefixes the Trainer, the registry and the eval report put before a score key.
_PREFIXES = ("eval_", "base.", "base_", "tuned_", "train_", "test_")


def bare_key(key: str) -> str:
    """The score key without the Trainer's or the report's prefixes: eval_rougeL -> rougeL, base.eval_loss -> loss."""
    while key not in LOWER_IS_BETTER_KEYS:
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            break
        key = key.removeprefix(prefix)
    return key


def lower_is_better(key: str) -> bool:
    """True for losses, perplexities and durations; False for every metric score (BLEU, accuracy, ...)."""
    bare = bare_key(key)
    return bare in LOWER_IS_BETTER_KEYS or bare.startswith("time")


def direction(key: str) -> str:
    """Ray Tune's ``mode`` for ``key``: "min" or "max"."""
    return "min" if lower_is_better(key) else "max"


def task_metrics(task: Task) -> list[str]:
    """The metric names that apply to ``task``, in spec order."""
    return [spec.name for spec in METRIC_SPECS.values() if task in spec.tasks]


def default_metrics(task: Task) -> tuple[str, ...]:
    """The metrics a task reports when the config names none."""
    return tuple(spec.name for spec in METRIC_SPECS.values() if task in spec.tasks and spec.default)


def training_metrics(label_head: bool, configured: list[str] | None) -> list[str]:
    """Metrics computed at each evaluation during training: the label metrics for a run whose data form has a
    classification head (``DataForm.label_head``; its logits are the predictions), else eval.metrics."""
    return task_metrics("classification") if label_head else list(configured or [])


def score_keys(names: list[str]) -> dict[str, str]:
    """Each score key the named metrics report -> the metric that reports it."""
    return {key: name for name in names for key in METRIC_SPECS[name].keys}
