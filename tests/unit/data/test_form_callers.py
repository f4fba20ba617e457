"""The packages read what a run is from its registered data form, not from its task string.

A form registered here serves task causal_lm (rows that set data.system) but answers with a label head and
no chat: every caller below would treat its runs as chat models if it still tested ``task == "causal_lm"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fixtures import build_tokenizer
from tunesmith.config import RunConfig, validate_config
from tunesmith.data.forms import FORMS, DataForm, form_for, register_form
from tunesmith.errors import TunesmithError
from tunesmith.export.runner import _check_request
from tunesmith.review.display import main_metric
from tunesmith.serve.app import create_app
from tunesmith.serve.pool import Engine, ModelPool, Route
from tunesmith.serve.render import chat_prompt
from tunesmith.track.registry import RunRow

DATA = {"train": "t.csv", "prompt": "{a}", "response": "{b}"}


@pytest.fixture()
def label_form() -> Iterator[DataForm]:
    base = FORMS["prompt_response"]
    form = register_form(
        dataclasses.replace(
            base, name="system_label", marker="system", label_head=True, serves_chat=False, decoder_only=False
        )
    )
    yield form
    del FORMS[form.name]


def _config(**data: str) -> RunConfig:
    return validate_config({"data": {**DATA, **data}})


def test_the_registered_form_is_the_one_picked(label_form: DataForm) -> None:
    assert form_for(_config(system="Be brief.")) is label_form
    assert form_for(_config()).name == "prompt_response"


def test_export_refuses_gguf_for_a_form_that_is_not_a_decoder_only_lm(label_form: DataForm) -> None:
    assert _check_request(_config(), Path("run"), "gguf", None) == "q8_0"
    with pytest.raises(TunesmithError, match="GGUF is for causal language models"):
        _check_request(_config(system="Be brief."), Path("run"), "gguf", None)


def test_the_run_listing_shows_accuracy_for_a_label_head_form(label_form: DataForm) -> None:
    metrics = {"accuracy": 0.9, "eval_loss": 1.2}
    plain = RunRow("a", "a", task="causal_lm", metrics=metrics, config={"train.objective": "sft"})
    labelled = dataclasses.replace(plain, config={"train.objective": "sft", "data.system": "Be brief."})
    assert main_metric(plain) == "eval_loss"
    assert main_metric(labelled) == "accuracy"


def _route(form: DataForm) -> Route:
    engine = Engine("m", None, "causal_lm", "fp32", mixed=False, context=None)  # no request here reaches the model
    return Route("m", engine, None, build_tokenizer(), _config().data, form)


def test_serve_sends_a_label_head_form_to_classify(label_form: DataForm) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with TestClient(create_app(ModelPool({"m": _route(label_form)})), raise_server_exceptions=False) as client:
        answer = client.post("/v1/chat/completions", json=body)  # a generating route would fail on its model None
    assert answer.status_code == 400
    assert "/v1/classify" in answer.json()["error"]["message"]


def test_serve_renders_a_form_without_chat_as_bare_text() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    chat = _route(FORMS["prompt_response"])
    bare = _route(dataclasses.replace(FORMS["prompt_response"], serves_chat=False))
    assert "<|im_start|>" in chat_prompt(chat, messages)
    assert chat_prompt(bare, messages) == "hello there"


@pytest.mark.parametrize("name", sorted(FORMS))
def test_each_form_states_what_its_task_string_used_to_decide(name: str) -> None:
    form = FORMS[name]
    assert form.label_head == ("classification" in form.tasks)
    assert form.encoder_decoder == ("seq2seq" in form.tasks)
    assert form.serves_chat == form.decoder_only == ("causal_lm" in form.tasks)
    assert form.turns == (form.marker == "messages")
    assert form.generates != form.label_head
