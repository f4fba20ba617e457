"""An Ollama ``Modelfile`` for an exported GGUF: FROM, TEMPLATE, SYSTEM and stop parameters.

Ollama templates are Go templates, chat templates are Jinja. Rather than translating Jinja (which can hold any
logic), the run's chat template is *rendered* on probe conversations and accepted only when its output is
exactly ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``), which is what SmolLM2, Qwen and many others
use; a template that renders anything else is reported as not converted instead of being guessed.

A conversation run (data.messages) gets ``chatml_tools_template()``: ChatML plus tunesmith's fallback tool
format exactly as training lays it out (``data.chat_format``): the tools listed in the system turn after
``TOOLS_PREAMBLE`` (the run's system prompt first), an assistant's calls as ``{"name": ..., "arguments": ...}``
between ``<tool_call>`` markers after its text, and tool results as one user turn of ``<tool_response>``
blocks. One difference Go templates cannot avoid: the JSON inside (each tool's schema, a call's arguments) is
written by Ollama's ``json`` function, Go's compact form (``{"a":1}``, keys in Go's order, ``<`` as ``\u003c``),
where training wrote Python's ``{"a": 1}``; the markers, the preamble and the turn layout are the same.
A conversation run without a chat template gets the same over tunesmith's plain layout (``plain_turns``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.chat_format import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TOOL_RESPONSE_CLOSE,
    TOOL_RESPONSE_OPEN,
    TOOLS_PREAMBLE,
)
from tunesmith.errors import TunesmithError

CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
# A run without a chat template reads "<system>\n\n<prompt>" (tunesmith.data.tokenize.prompt_text).
PLAIN_TEMPLATE = "{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}"
CHATML_STOPS = ("<|im_start|>", "<|im_end|>")


def _literal(text: str) -> str:
    # Text of a Go template: only "{{" would start an action.
    return text.replace("{{", '{{ "{{" }}')


@dataclass(frozen=True)
class _Turns:
    """How a chat layout opens and closes turns (Go template text)."""

    system: str
    user: str
    assistant: str
    end: str  # after a system or user turn
    assistant_end: str
    generation: str  # the opening of the answer


CHATML_TURNS = _Turns(
    "<|im_start|>system\n",
    "<|im_start|>user\n",
    "<|im_start|>assistant\n",
    "<|im_end|>\n",
    "<|im_end|>\n",
    "<|im_start|>assistant\n",
)


def plain_turns(eos: str) -> _Turns:
    """tunesmith's PLAIN_CHAT_TEMPLATE (``data.chat_format``): ``User: ...`` lines, answers ending in ``eos``."""
    return _Turns("System: ", "User: ", "Assistant: ", "\n", _literal(eos) + "\n", "Assistant: ")


def chatml_tools_template() -> str:
    """ChatML with tools, tool calls and tool results in tunesmith's fallback format (module docstring)."""
    return tools_template(CHATML_TURNS)


def tools_template(turns: _Turns) -> str:
    """A Go template of ``turns`` with tools, tool calls and tool results in the fallback format."""
    schemas = "{{ range $n, $tool := $.Tools }}{{ if $n }}\n{{ end }}{{ json $tool }}{{ end }}"
    head, tail = (_literal(part) for part in TOOLS_PREAMBLE.split("{schemas}"))
    preamble = head + schemas + tail
    # Ollama finds the call marker it parses answers for as the first text inside "{{ if .ToolCalls }}"
    # (tools/template.go parseTag): so that block starts with the bare marker, and the "\n" between a text and
    # its first call is written before it, with $m.ToolCalls (a variable, which that search passes over).
    call = f'{_literal(TOOL_CALL_OPEN)}{{{{ "" }}}}\n{{"name": "{{{{ $call.Function.Name }}}}", '
    call += f'"arguments": {{{{ json $call.Function.Arguments }}}}}}\n{_literal(TOOL_CALL_CLOSE)}'
    calls = (
        "{{ if and $m.Content $m.ToolCalls }}\n{{ end }}"
        "{{ if .ToolCalls }}{{ range $j, $call := .ToolCalls }}" + call + ""
        "{{ if gt (len (slice $m.ToolCalls $j)) 1 }}\n{{ end }}{{ end }}{{ end }}"
    )
    return (
        '{{ $previous := "" }}'
        "{{ range $i, $m := .Messages }}"
        '{{ if and (eq $previous "tool") (ne $m.Role "tool") }}' + turns.end + "{{ end }}"
        '{{ if and (eq $i 0) $.Tools (ne $m.Role "system") }}' + turns.system + preamble + turns.end + "{{ end }}"
        '{{ if eq $m.Role "system" }}' + turns.system + "{{ $m.Content }}"
        "{{ if and (eq $i 0) $.Tools }}{{ if $m.Content }}\n\n{{ end }}"
        + preamble
        + "{{ end }}"
        + turns.end
        + '{{ else if eq $m.Role "assistant" }}'
        + turns.assistant
        + "{{ $m.Content }}"
        + calls
        + turns.assistant_end
        + '{{ else if eq $m.Role "tool" }}'
        '{{ if eq $previous "tool" }}\n{{ else }}' + turns.user + "{{ end }}"
        f"{_literal(TOOL_RESPONSE_OPEN)}\n{{{{ $m.Content }}}}\n{_literal(TOOL_RESPONSE_CLOSE)}"
        "{{ else }}" + turns.user + "{{ $m.Content }}" + turns.end + "{{ end }}"
        "{{ $previous = $m.Role }}"
        "{{ end }}"
        '{{ if eq $previous "tool" }}' + turns.end + "{{ end }}" + turns.generation
    )


@dataclass
class OllamaTemplate:
    """The Go template for a run (or None with the reason), the system prompt and the stop strings."""

    template: str | None
    system: str | None
    stops: list[str] = field(default_factory=list)
    problem: str | None = None


def ollama_template(tokenizer: Any, system: str | None, chat: bool = True, tools: bool = False) -> OllamaTemplate:
    """Convert the tokenizer's chat template; ``system`` (the run's data.system) wins over a template default.

    ``chat``: whether the run rendered its examples through the chat template (data.chat_template).
    ``tools``: a conversation run, whose template also renders tools, calls and results (the fallback format).
    """
    eos = [tokenizer.eos_token] if tokenizer.eos_token else []
    if not chat or not getattr(tokenizer, "chat_template", None):
        # A conversation run without a chat template read tunesmith's plain conversation layout.
        plain = tools_template(plain_turns(tokenizer.eos_token or "")) if tools else PLAIN_TEMPLATE
        return OllamaTemplate(plain, system, eos)
    chatml, default_system = _chatml_default_system(tokenizer)
    if not chatml:
        return OllamaTemplate(
            None,
            system,
            eos,
            problem="the run's chat template is not ChatML-style, so tunesmith did not convert it to an Ollama "
            "TEMPLATE; Ollama uses the GGUF's tokenizer.chat_template only if it recognises it",
        )
    stops = list(dict.fromkeys([*CHATML_STOPS, *eos]))
    template = chatml_tools_template() if tools else CHATML_TEMPLATE
    return OllamaTemplate(template, system if system else default_system or None, stops)


def modelfile_text(gguf_name: str, converted: OllamaTemplate) -> str:
    """The Modelfile: the GGUF beside it, the template (or why there is none), the system prompt, stops."""
    lines = ["# Written by tunesmith export. Create the model with: ollama create NAME -f Modelfile", ""]
    lines.append(f"FROM ./{gguf_name}")
    if converted.template is not None:
        lines.append(f'TEMPLATE """{converted.template}"""')
    else:
        lines.append(f"# TEMPLATE not written: {converted.problem}")
    if converted.system:
        if '"""' in converted.system:
            raise TunesmithError('data.system: contains """, which an Ollama Modelfile cannot quote')
        lines.append(f'SYSTEM """{converted.system}"""')
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in converted.stops]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _chatml_default_system(tokenizer: Any) -> tuple[bool, str | None]:
    """Whether the template renders ChatML, and the system prompt it adds on its own (None: none)."""
    full = [
        {"role": "system", "content": "S1"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
    ]
    if _render(tokenizer, full) != _chatml(full):
        return False, None
    alone = [{"role": "user", "content": "U1"}]
    rendered, expected = _render(tokenizer, alone) or "", _chatml(alone)
    if rendered == expected:
        return True, None
    prefix = rendered[: -len(expected)] if rendered.endswith(expected) else ""
    head, tail = "<|im_start|>system\n", "<|im_end|>\n"
    if prefix.startswith(head) and prefix.endswith(tail):
        return True, prefix[len(head) : -len(tail)]
    return False, None


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str | None:
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    except Exception:  # a template may refuse a conversation shape (e.g. no system role): then it is not ChatML
        return None


def _chatml(messages: list[dict[str, str]]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"
