"""Text pairs -> token ids with a loss mask, rendered the way the model will see them."""

from __future__ import annotations

from collections.abc import Callable
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
    cuts_keep_turns: bool = False  # a cut row is still whole turns (conversations), so it trains as it is


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


@dataclass(frozen=True)
class TemplateOverhead:
    """Tokens every row spends on fixed text: the chat template's markup and its system prompt."""

    fixed: int  # tokens of a row whose prompt and response are empty
    default_system: int  # of those, a system prompt the template adds by itself when data.system is unset


def template_overhead(tokenizer: PreTrainedTokenizerBase, cfg: DataConfig) -> TemplateOverhead:
    """What the template adds to every row, counted on an empty prompt and response."""

    def count(settings: DataConfig) -> int:
        text = prompt_text(tokenizer, settings, "") + response_text(tokenizer, settings, "", "")
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    fixed = count(cfg)
    if cfg.system is not None or not uses_chat_template(tokenizer, cfg):
        return TemplateOverhead(fixed, 0)
    # An explicit empty system message leaves only the markup: the difference is the template's own prompt.
    markup = count(cfg.model_copy(update={"system": ""}))
    return TemplateOverhead(fixed, max(fixed - markup, 0))


def _messages(cfg: DataConfig, prompt: str) -> list[dict[str, str]]:
    # An empty data.system is a system turn too: it keeps a template from adding its own default prompt.
    system = [{"role": "system", "content": cfg.system}] if cfg.system is not None else []
    return [*system, {"role": "user", "content": prompt}]


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    # Llama-style tokenizers prepend BOS when encoding; we encode with add_special_tokens=False, so add it here.
    if tokenizer.bos_token_id is None:
        return False
    probe = tokenizer("a")["input_ids"]
    return bool(probe) and probe[0] == tokenizer.bos_token_id


Encoder = Callable[[list[Pair], "PreTrainedTokenizerBase", DataConfig], tuple[list[dict[str, Any]], TokenizeStats]]


def tokenize_seq2seq(
    pairs: list[Pair], tokenizer: PreTrainedTokenizerBase, cfg: DataConfig
) -> tuple[list[dict[str, Any]], TokenizeStats]:
    """Encoder input and decoder labels, each truncated to max_length (counted once per row)."""
    sources = tokenizer([p.prompt for p in pairs], add_special_tokens=True)["input_ids"] if pairs else []
    targets = tokenizer([p.response for p in pairs], add_special_tokens=True)["input_ids"] if pairs else []
    stats = TokenizeStats()
    examples = []
    for source, target in zip(sources, targets, strict=True):
        stats.lengths.append(max(len(source), len(target)))
        if len(source) > cfg.max_length or len(target) > cfg.max_length:
            stats.truncated += 1
        examples.append({"input_ids": _clip(source, cfg.max_length), "labels": _clip(target, cfg.max_length)})
    return examples, stats


def tokenize_classification(
    pairs: list[Pair], tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, label_ids: dict[str, int]
) -> tuple[list[dict[str, Any]], TokenizeStats]:
    """Text ids and the label's index; rows whose label training never saw get -1 (scored as errors in eval)."""
    encoded = tokenizer([p.prompt for p in pairs], add_special_tokens=True)["input_ids"] if pairs else []
    stats = TokenizeStats()
    examples = []
    for ids, pair in zip(encoded, pairs, strict=True):
        stats.lengths.append(len(ids))
        if len(ids) > cfg.max_length:
            stats.truncated += 1
        examples.append({"input_ids": _clip(ids, cfg.max_length), "labels": label_ids.get(pair.response, -1)})
    return examples, stats


def _clip(ids: list[int], max_length: int) -> list[int]:
    # Keep the final special token (EOS / [SEP]) when cutting, as the model saw it in pre-training.
    if len(ids) <= max_length:
        return list(ids)
    return [*ids[: max_length - 1], ids[-1]]
