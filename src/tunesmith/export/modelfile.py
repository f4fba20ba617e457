"""An Ollama ``Modelfile`` for an exported GGUF: FROM, TEMPLATE, SYSTEM and stop parameters.

Ollama templates are Go templates, chat templates are Jinja. Rather than translating Jinja (which can hold any
logic), the run's chat template is *rendered* on probe conversations and accepted only when its output is
exactly ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``), which is what SmolLM2, Qwen and many others
use; a template that renders anything else is reported as not converted instead of being guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import TunesmithError

CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
# A run without a chat template reads "<system>\n\n<prompt>" (tunesmith.data.tokenize.prompt_text).
PLAIN_TEMPLATE = "{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}"
CHATML_STOPS = ("<|im_start|>", "<|im_end|>")


@dataclass
class OllamaTemplate:
    """The Go template for a run (or None with the reason), the system prompt and the stop strings."""

    template: str | None
    system: str | None
    stops: list[str] = field(default_factory=list)
    problem: str | None = None


def ollama_template(tokenizer: Any, system: str | None, chat: bool = True) -> OllamaTemplate:
    """Convert the tokenizer's chat template; ``system`` (the run's data.system) wins over a template default.

    ``chat``: whether the run rendered its examples through the chat template (data.chat_template).
    """
    eos = [tokenizer.eos_token] if tokenizer.eos_token else []
    if not chat or not getattr(tokenizer, "chat_template", None):
        return OllamaTemplate(PLAIN_TEMPLATE, system, eos)
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
    return OllamaTemplate(CHATML_TEMPLATE, system if system else default_system or None, stops)


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
