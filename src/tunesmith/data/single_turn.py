"""The single-turn row kinds, one per task: which templates a row has, how it tokenises, what its target is.

``tunesmith.data.forms`` registers one data form for each; the pipeline below it (``prepare``, ``collate``)
reads these facts by task, so no module tests the task itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from tunesmith.config import TASK_DATA_KEYS, Task
from tunesmith.data.tokenize import Encoder, tokenize_classification, tokenize_pairs, tokenize_seq2seq


@dataclass(frozen=True)
class SingleTurn:
    """One input template and one target per row."""

    task: Task
    encoder: Callable[[list[str] | None], Encoder]  # the tokeniser, given the label set (classification)
    token_loss: bool = True  # labels are per token of input_ids (a causal LM), so rows can be packed
    encoder_decoder: bool = False  # the target goes to a decoder (seq2seq)
    labelled: bool = False  # the target is a class name read from a column (classification)

    @property
    def keys(self) -> tuple[str, str]:
        """The dotted keys of the input template and the target (a template, or the label column)."""
        source, target = TASK_DATA_KEYS[self.task]
        return f"data.{source}", f"data.{target}"


def _classification(labels: list[str] | None) -> Encoder:
    # No label set (the doctor measuring lengths): every label maps to -1, which changes neither ids nor lengths.
    return partial(tokenize_classification, label_ids={name: i for i, name in enumerate(labels or [])})


SINGLE_TURN: dict[Task, SingleTurn] = {
    "causal_lm": SingleTurn("causal_lm", lambda labels: tokenize_pairs),
    "seq2seq": SingleTurn("seq2seq", lambda labels: tokenize_seq2seq, token_loss=False, encoder_decoder=True),
    "classification": SingleTurn("classification", _classification, token_loss=False, labelled=True),
}
