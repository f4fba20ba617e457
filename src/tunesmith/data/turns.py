"""Conversations -> token ids with a loss mask over assistant turns, cut at a turn boundary.

Where each turn starts and ends is found by rendering prefixes of the conversation through the same template
(``chat_format.ChatRenderer``): the text of the first ``j`` messages must be a prefix of the whole, and the
text of the first ``j`` with a generation prompt marks where an assistant's own words begin. That holds for
any template that renders a conversation turn by turn, so no template is parsed. Each piece is tokenised on
its own, as a prompt and its answer are for single turns, so loss boundaries fall exactly between tokens.

``data.loss_on``: ``response`` (default) puts loss on every assistant turn (its text, its tool calls and its
end-of-turn marker), ``last`` on the final assistant turn only, ``all`` on every token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesmith.config import DataConfig
from tunesmith.data.chat_format import ChatRenderer, chat_renderer
from tunesmith.data.conversation import Conversation
from tunesmith.data.tokenize import IGNORE_INDEX, TokenizeStats, uses_chat_template
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Piece:
    """A stretch of the rendered conversation: its text, the message it belongs to, and whether it carries loss."""

    text: str
    message: int  # index into the rendered (template-shaped) messages
    role: str
    answer: bool  # an assistant's own words and end-of-turn (not its header)


@dataclass
class EncodedConversation:
    """One conversation as token ids and labels, with each turn's token span (after any cut)."""

    input_ids: list[int]
    labels: list[int]
    turns: list[tuple[str, int, int]] = field(default_factory=list)  # (role, start, end) per rendered message
    untruncated_length: int = 0
    cut: bool = False


def conversation_renderer(tokenizer: PreTrainedTokenizerBase, cfg: DataConfig) -> ChatRenderer:
    """The renderer training uses for ``cfg`` (data.chat_template off: the plain template)."""
    return chat_renderer(tokenizer, use_template=uses_chat_template(tokenizer, cfg))


def render_pieces(conversation: Conversation, renderer: ChatRenderer) -> list[Piece]:
    """The conversation's rendered text in pieces: each message, an assistant's header split from its words."""
    messages = renderer.template_messages(conversation.messages, conversation.tools)
    tools = conversation.tools
    whole = renderer.text(messages, tools, generation_prompt=False)
    pieces: list[Piece] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            header = _prefix(renderer.text(messages[:index], tools, generation_prompt=True), done, whole, index)
            pieces.append(Piece(header[len(done) :], index, "assistant", answer=False))
            done = header
        upto = _prefix(renderer.text(messages[: index + 1], tools, generation_prompt=False), done, whole, index)
        pieces.append(Piece(upto[len(done) :], index, message["role"], answer=message["role"] == "assistant"))
        done = upto
    if whole != done:  # text the template adds after the last turn (rare): context only
        pieces.append(Piece(whole[len(done) :], len(messages) - 1, messages[-1]["role"], answer=False))
    return pieces


def _prefix(text: str, done: str, whole: str, index: int) -> str:
    if not (text.startswith(done) and whole.startswith(text)):
        raise TunesmithError(
            f"data.messages: the chat template renders the first {index + 1} messages differently from the start "
            "of the whole conversation, so turns cannot be told apart",
            hint="set data.chat_template: off to use tunesmith's plain conversation format",
        )
    return text


def encode_conversation(
    conversation: Conversation, tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, renderer: ChatRenderer
) -> EncodedConversation | None:
    """Token ids and labels for ``cfg.loss_on``, cut after the last assistant turn that fits ``cfg.max_length``.

    None when not even the first assistant turn fits (nothing left to learn).
    """
    pieces = [p for p in render_pieces(conversation, renderer) if p.text]
    ids = tokenizer([p.text for p in pieces], add_special_tokens=False)["input_ids"]
    total = sum(len(piece_ids) for piece_ids in ids)
    keep = _pieces_that_fit(pieces, ids, cfg.max_length)
    if keep == 0:
        return None
    pieces, ids = pieces[:keep], ids[:keep]
    last = max(p.message for p in pieces if p.answer)
    encoded = EncodedConversation([], [], untruncated_length=total, cut=total > cfg.max_length)
    previous = -1
    for piece, piece_ids in zip(pieces, ids, strict=True):
        loss = cfg.loss_on == "all" or (piece.answer and (cfg.loss_on == "response" or piece.message == last))
        start = len(encoded.input_ids)
        encoded.input_ids += piece_ids
        encoded.labels += list(piece_ids) if loss else [IGNORE_INDEX] * len(piece_ids)
        if piece.message == previous:  # an assistant's header and its words are one turn
            start = encoded.turns.pop()[1]
        encoded.turns.append((piece.role, start, len(encoded.input_ids)))
        previous = piece.message
    return encoded


def _pieces_that_fit(pieces: list[Piece], ids: list[list[int]], max_length: int) -> int:
    # Whole conversation when it fits; else up to the end of the last assistant answer within max_length.
    if sum(len(i) for i in ids) <= max_length:
        return len(pieces)
    used, keep = 0, 0
    for position, (piece, piece_ids) in enumerate(zip(pieces, ids, strict=True)):
        used += len(piece_ids)
        if used > max_length:
            break
        if piece.answer:
            keep = position + 1
    return keep


def tokenize_conversations(
    conversations: list[Conversation], tokenizer: PreTrainedTokenizerBase, cfg: DataConfig
) -> tuple[list[dict[str, Any]], TokenizeStats]:
    """Every conversation encoded; cuts and conversations with no assistant turn left are counted."""
    renderer = conversation_renderer(tokenizer, cfg)
    stats = TokenizeStats(cuts_keep_turns=True)
    examples = []
    for conversation in conversations:
        encoded = encode_conversation(conversation, tokenizer, cfg, renderer)
        if encoded is None:
            stats.truncated += 1
            stats.dropped_truncated += 1
            stats.lengths.append(conversation_length(conversation, tokenizer, renderer))
            continue
        stats.lengths.append(encoded.untruncated_length)
        stats.truncated += int(encoded.cut)
        examples.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    return examples, stats


def conversation_length(conversation: Conversation, tokenizer: PreTrainedTokenizerBase, renderer: ChatRenderer) -> int:
    """Tokens of the whole rendered conversation, before any cut."""
    pieces = render_pieces(conversation, renderer)
    return sum(len(ids) for ids in tokenizer([p.text for p in pieces], add_special_tokens=False)["input_ids"])
