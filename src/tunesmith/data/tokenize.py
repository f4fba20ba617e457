"""Text pairs -> token ids with a loss mask, rendered the way the model will see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesmith.config import DataConfig
from tunesmith.data.render import Pair

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


@dataclass
class TokenizeStats:
    """What tokenisation did to the rows."""

    truncated: int = 0
    dropped_truncated: int = 0
    lengths: list[int] = field(default_factory=list)


def uses_chat_template(tokenizer: PreTrainedTokenizerBase, cfg: DataConfig) -> bool:
    """Whether examples go through the tokenizer's chat template."""
    if cfg.chat_template == "off":
        return False
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, prompt: str) -> str:
    """The exact text the model reads before it starts answering."""
    if uses_chat_template(tokenizer, cfg):
        text = tokenizer.apply_chat_template(_messages(cfg, prompt), tokenize=False, add_generation_prompt=True)
        return str(text)
    prefix = f"{cfg.system}\n\n" if cfg.system else ""
    bos = tokenizer.bos_token if _adds_bos(tokenizer) else ""
    return f"{bos or ''}{prefix}{prompt}"


def response_text(tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, prompt: str, response: str) -> str:
    """The answer as the model should produce it, end-of-turn marker included."""
    if uses_chat_template(tokenizer, cfg):
        head = prompt_text(tokenizer, cfg, prompt)
        messages = [*_messages(cfg, prompt), {"role": "assistant", "content": response}]
        full = str(tokenizer.apply_chat_template(messages, tokenize=False))
        if full.startswith(head):
            return full[len(head) :]
    return f"{response}{tokenizer.eos_token or ''}"


def tokenize_pairs(
    pairs: list[Pair], tokenizer: PreTrainedTokenizerBase, cfg: DataConfig
) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Tokenise prompt and response apart (a clean loss boundary), then join and truncate."""
    heads = [prompt_text(tokenizer, cfg, p.prompt) for p in pairs]
    tails = [response_text(tokenizer, cfg, p.prompt, p.response) for p in pairs]
    head_ids = tokenizer(heads, add_special_tokens=False)["input_ids"] if heads else []
    tail_ids = tokenizer(tails, add_special_tokens=False)["input_ids"] if tails else []
    stats = TokenizeStats()
    examples = []
    for head, tail in zip(head_ids, tail_ids, strict=True):
        example = _join(head, tail, cfg, stats)
        if example is not None:
            examples.append(example)
    return examples, stats


def _join(head: list[int], tail: list[int], cfg: DataConfig, stats: TokenizeStats) -> dict[str, Any] | None:
    input_ids = head + tail
    masked_head = [IGNORE_INDEX] * len(head) if cfg.loss_on == "response" else list(head)
    labels = masked_head + list(tail)
    stats.lengths.append(len(input_ids))
    if len(input_ids) > cfg.max_length:
        stats.truncated += 1
        input_ids, labels = input_ids[: cfg.max_length], labels[: cfg.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            stats.dropped_truncated += 1
            return None
    return {"input_ids": input_ids, "labels": labels}


def _messages(cfg: DataConfig, prompt: str) -> list[dict[str, str]]:
    system = [{"role": "system", "content": cfg.system}] if cfg.system else []
    return [*system, {"role": "user", "content": prompt}]


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    # Llama-style tokenizers prepend BOS when encoding; we encode with add_special_tokens=False, so add it here.
    if tokenizer.bos_token_id is None:
        return False
    probe = tokenizer("a")["input_ids"]
    return bool(probe) and probe[0] == tokenizer.bos_token_id
