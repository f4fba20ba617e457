"""Eval kinds, registered by data form: how ``tunesmith eval`` scores a run whose rows have that form.

A form with no kind of its own (prompt_response, source_target, preference) is scored by the runner's
single-turn path: one answer per distinct prompt against its references. Adding a kind is one function here
that imports its module when called, so the registry costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.config import RunConfig

if TYPE_CHECKING:
    from tunesmith.evaluate.report import EvalReport

# (run_dir, --data file or None, --limit, score the base too, teacher-forced loss) -> the written report
EvalKind = Callable[[Path, Path | None, int | None, bool, bool], "EvalReport"]

EVAL_KINDS: dict[str, EvalKind] = {}


def register_eval_kind(form: str) -> Callable[[EvalKind], EvalKind]:
    """Make ``kind`` the way runs of data form ``form`` are evaluated."""

    def decorate(kind: EvalKind) -> EvalKind:
        if form in EVAL_KINDS:
            raise ValueError(f"data form {form!r} has two eval kinds")
        EVAL_KINDS[form] = kind
        return kind

    return decorate


def eval_kind_for(config: RunConfig) -> EvalKind | None:
    """The eval kind of ``config``'s data form, or None for the single-turn path."""
    from tunesmith.data.forms import form_for

    return EVAL_KINDS.get(form_for(config).name)


@register_eval_kind("text_label")
def _classification(run_dir: Path, data: Path | None, limit: int | None, base: bool, loss: bool) -> EvalReport:
    # A classification head has no base to compare with (see classify.py) and no generated text to score.
    from tunesmith.evaluate.classify import evaluate_classification

    return evaluate_classification(run_dir, data, limit)


@register_eval_kind("conversation")
def _conversation(run_dir: Path, data: Path | None, limit: int | None, base: bool, loss: bool) -> EvalReport:
    from tunesmith.evaluate.conversation import evaluate_conversations

    return evaluate_conversations(run_dir, data, limit, base, loss)


@register_eval_kind("prompt_only")
def _rewards(run_dir: Path, data: Path | None, limit: int | None, base: bool, loss: bool) -> EvalReport:
    # GRPO prompts have no single reference to score the loss against: each reward's mean is the score.
    from tunesmith.evaluate.rewards import evaluate_rewards
    from tunesmith.evaluate.scoring_model import inference_model
    from tunesmith.rundir import read_run

    config, _ = read_run(run_dir)
    return evaluate_rewards(run_dir, config, data, limit, base, inference_model)
