"""The data-form registry: each config maps to exactly one registered form."""

from __future__ import annotations

import pytest

from tunesmith.config import validate_config
from tunesmith.data.forms import FORMS, form_for, register_form

BASE = {"train": "t.csv"}


@pytest.mark.parametrize(
    ("raw", "form"),
    [
        ({"data": {**BASE, "prompt": "{a}", "response": "{b}"}}, "prompt_response"),
        ({"task": "seq2seq", "data": {**BASE, "source": "{a}", "target": "{b}"}}, "source_target"),
        ({"task": "classification", "data": {**BASE, "text": "{a}", "label": "b"}}, "text_label"),
        (
            {"train": {"objective": "dpo"}, "data": {**BASE, "prompt": "{a}", "chosen": "{b}", "rejected": "{c}"}},
            "preference",
        ),
        ({"data": {**BASE, "messages": "messages"}}, "conversation"),
    ],
)
def test_each_config_has_its_form(raw: dict[str, object], form: str) -> None:
    assert form_for(validate_config(raw)).name == form


def test_single_turn_forms_carry_their_task_facts() -> None:
    assert FORMS["prompt_response"].token_loss and FORMS["conversation"].token_loss
    assert FORMS["source_target"].single_turn is not None and FORMS["source_target"].single_turn.encoder_decoder
    assert FORMS["text_label"].single_turn is not None and FORMS["text_label"].single_turn.labelled
    assert FORMS["conversation"].single_turn is None and FORMS["conversation"].marker == "messages"


def test_a_form_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_form(FORMS["conversation"])
