"""A conversation run's exports render tools, calls and results as training did: the Ollama TEMPLATE (executed
by Go's text/template when Go is installed) and the GGUF's chat template (rendered by transformers)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from export_checks import CONVERSATION, LOOKUP, SYSTEM

from fixtures import build_tokenizer
from tunesmith.data.chat_format import PLAIN_CHAT_TEMPLATE, chat_renderer
from tunesmith.data.conversation import normalise_messages
from tunesmith.export import export_run
from tunesmith.export.chat_template import fallback_chat_template
from tunesmith.export.modelfile import (
    CHATML_TEMPLATE,
    PLAIN_TEMPLATE,
    chatml_tools_template,
    ollama_template,
    plain_turns,
    tools_template,
)

RETURN = {"type": "function", "function": {"name": "start_return", "description": "Open a <return>.", "parameters": {}}}
_CALLS = [
    {"type": "function", "function": {"name": "lookup_order", "arguments": {"id": "A1", "n": [1, {"x": 2.5}]}}},
    {"type": "function", "function": {"name": "start_return", "arguments": {}}},
]
# Conversations with and without tools and a system prompt, text before a call, two calls, two results in a row.
CASES: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
    (CONVERSATION, [LOOKUP]),
    ([{"role": "system", "content": SYSTEM}, *CONVERSATION], [LOOKUP, RETURN]),
    ([{"role": "system", "content": ""}, *CONVERSATION], [LOOKUP]),
    (CONVERSATION[:1], []),
    ([{"role": "system", "content": SYSTEM}, *CONVERSATION[:1]], []),
    (
        [
            {"role": "user", "content": "Return A1, it is broken."},
            {"role": "assistant", "content": "Let me check.", "tool_calls": _CALLS},
            {"role": "tool", "content": "shipped"},
            {"role": "tool", "content": '{"label": "R-1"}'},
            {"role": "user", "content": "thanks"},
        ],
        [LOOKUP, RETURN],
    ),
    (CONVERSATION[:3], [LOOKUP]),
]


def _training_text(messages: list[dict[str, Any]], tools: list[dict[str, Any]], chatml: bool = True) -> str:
    renderer = chat_renderer(build_tokenizer(chat_template=chatml))
    assert not renderer.native_tools  # ChatML without tools, or the plain layout: the fallback format
    normalised = normalise_messages(messages, need_assistant=False)
    return renderer.text(renderer.template_messages(normalised, tools), tools, generation_prompt=True)


def _canonical(text: str) -> str:
    # Go's json writes {"a":1} and sorts map keys; training wrote {"a": 1}: compare JSON lines as values.
    lines = []
    for line in text.split("\n"):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            lines.append(line)
            continue
        lines.append(json.dumps(value, sort_keys=True) if isinstance(value, dict) else line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def go_render(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: the Ollama template is executed by Go's text/template")
    folder = tmp_path_factory.mktemp("go-render")
    source = Path(__file__).with_name("ollama_render.go")
    binary = folder / "ollama_render"
    env = {"HOME": str(folder), "GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "go"), "GOFLAGS": "-mod=mod"}
    subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True, env={**env, "PATH": _path()})

    def render(template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[str, str]:
        payload = json.dumps({"template": template, "messages": messages, "tools": tools})
        done = subprocess.run([str(binary)], input=payload, capture_output=True, text=True, check=True)
        out = json.loads(done.stdout)
        return out["prompt"], out["tag"]

    return render


def _path() -> str:
    import os

    return os.environ.get("PATH", "")


@pytest.mark.parametrize("chatml", [True, False], ids=["chatml", "plain"])
@pytest.mark.parametrize(("messages", "tools"), CASES)
def test_the_ollama_template_renders_as_training(
    go_render: Any, messages: list[Any], tools: list[Any], chatml: bool
) -> None:
    ollama = [{**m, "content": m.get("content") or ""} for m in messages]  # Ollama's messages carry text content
    tokenizer = build_tokenizer(chat_template=chatml)
    template = ollama_template(tokenizer, None, tools=True).template
    assert template == (chatml_tools_template() if chatml else tools_template(plain_turns("<|im_end|>")))
    rendered, tag = go_render(template, ollama, tools)
    assert _canonical(rendered) == _canonical(_training_text(messages, tools, chatml))
    assert tag == "<tool_call>"  # what Ollama looks for in an answer to read calls back
    if chatml and not tools and not any(m.get("tool_calls") for m in messages):  # exactly the plain ChatML one
        assert rendered == go_render(CHATML_TEMPLATE, ollama, [])[0]


@pytest.mark.parametrize("chatml", [True, False], ids=["chatml", "plain"])
@pytest.mark.parametrize(("messages", "tools"), CASES)
def test_the_gguf_chat_template_renders_as_training(messages: list[Any], tools: list[Any], chatml: bool) -> None:
    tokenizer = build_tokenizer(chat_template=chatml)
    carried = fallback_chat_template(tokenizer.chat_template if chatml else PLAIN_CHAT_TEMPLATE)
    native = tokenizer.apply_chat_template(
        messages, tools=tools or None, chat_template=carried, tokenize=False, add_generation_prompt=True
    )
    assert native == _training_text(messages, tools, chatml)  # exact: Jinja's tojson writes JSON as training did


def test_a_conversation_run_exports_tools_to_ollama_and_gguf(conversation_run: Path, tmp_path: Path) -> None:
    import gguf

    result = export_run(conversation_run, "ollama", "q8_0", output=tmp_path / "ollama")
    text = (tmp_path / "ollama" / "Modelfile").read_text()
    assert f'TEMPLATE """{chatml_tools_template()}"""' in text and f'SYSTEM """{SYSTEM}"""' in text
    assert ".Tools" in text and ".ToolCalls" in text and '"tool"' in text and "<tool_response>" in text
    (path,) = [p for p in result.files if p.suffix == ".gguf"]
    field = gguf.GGUFReader(path).get_field("tokenizer.chat_template")
    assert field is not None
    assert field.contents() == fallback_chat_template(build_tokenizer().chat_template)


def test_a_single_turn_run_keeps_its_template() -> None:
    assert ollama_template(build_tokenizer(), SYSTEM).template == CHATML_TEMPLATE
    assert ollama_template(build_tokenizer(chat_template=False), SYSTEM).template == PLAIN_TEMPLATE
    assert ollama_template(build_tokenizer(), SYSTEM, chat=False).template == PLAIN_TEMPLATE
