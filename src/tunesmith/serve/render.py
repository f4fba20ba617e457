"""Requests -> the exact token ids the model reads, rendered as ``tunesmith generate`` renders a prompt."""

from __future__ import annotations

from typing import Any

from tunesmith.data.tokenize import prompt_text, uses_chat_template
from tunesmith.serve.pool import Route


def chat_prompt(route: Route, messages: list[dict[str, str]]) -> str:
    """The text the model reads for a conversation; the run's ``data.system`` applies when none is given."""
    tokenizer, data = route.tokenizer, route.data
    if route.task == "seq2seq":
        # Encoder-decoder runs were tuned on a bare source text: they read the user turns as is.
        return "\n\n".join(m["content"] for m in messages if m["role"] == "user")
    system = [m["content"] for m in messages if m["role"] in ("system", "developer")]
    if not uses_chat_template(tokenizer, data):
        body = "\n\n".join(m["content"] for m in messages if m["role"] not in ("system", "developer"))
        with_system = data.model_copy(update={"system": "\n\n".join(system)}) if system else data
        return prompt_text(tokenizer, with_system, body)
    turns: list[dict[str, Any]] = [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]} for m in messages
    ]
    if not system and data.system:
        turns.insert(0, {"role": "system", "content": data.system})
    return str(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))


def encode(route: Route, text: str, chat: bool) -> list[int]:
    """Token ids: a rendered chat prompt carries its own special tokens; a raw prompt gets the tokenizer's."""
    special = route.task == "seq2seq" or not chat
    return list(route.tokenizer(text, add_special_tokens=special)["input_ids"])
