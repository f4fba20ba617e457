"""A conversation table (data.messages) -> checked conversations -> split -> tokenised with a turn loss mask.

Reading checks every message of every row (``conversation.read_conversations``), so a malformed one stops
``tunesmith doctor`` and ``tunesmith train`` before any model loads. Each conversation is one training row:
packing concatenates whole rows, so a conversation is never split across two.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tunesmith.cache import file_sha256
from tunesmith.config import DataConfig
from tunesmith.data.conversation import Conversation, read_conversations
from tunesmith.data.prepare import DataStats, PreparedData, Tables, tokenize_cached
from tunesmith.data.tables import read_table
from tunesmith.data.turns import tokenize_conversations

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def read_conversation_tables(cfg: DataConfig) -> Tables:
    """Read the tables and check every conversation in them (no model needed)."""
    assert cfg.messages is not None  # the form is chosen by data.messages
    train = read_table(cfg.train, "data.train")
    read_conversations(train, cfg.messages, cfg.tools, cfg.train)
    sha = {str(cfg.train): file_sha256(cfg.train)}
    evaluation = None
    if cfg.eval is not None:
        evaluation = read_table(cfg.eval, "data.eval")
        read_conversations(evaluation, cfg.messages, cfg.tools, cfg.eval)
        sha[str(cfg.eval)] = file_sha256(cfg.eval)
    return Tables(train, evaluation, sha)


def conversations_of(cfg: DataConfig, tables: Tables) -> tuple[list[Conversation], list[Conversation]]:
    """The (train, eval) conversations: data.eval's rows, or data.eval_fraction held out with data.split_seed."""
    assert cfg.messages is not None
    rows = read_conversations(tables.train, cfg.messages, cfg.tools, cfg.train, cfg.system)
    if tables.eval is not None and cfg.eval is not None:
        return rows, read_conversations(tables.eval, cfg.messages, cfg.tools, cfg.eval, cfg.system)
    if cfg.eval_fraction == 0 or len(rows) < 2:
        return rows, []
    order = list(range(len(rows)))
    random.Random(cfg.split_seed).shuffle(order)
    held_out = set(order[: min(len(rows) - 1, max(1, round(len(rows) * cfg.eval_fraction)))])
    return [r for i, r in enumerate(rows) if i not in held_out], [r for i, r in enumerate(rows) if i in held_out]


def prepare_conversation_data(cfg: DataConfig, tables: Tables, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Tokenised train/eval splits (cached like single-turn data); cut conversations are counted as truncated."""
    train_rows, eval_rows = conversations_of(cfg, tables)
    stats = DataStats(rows_read=len(tables.train), max_length=cfg.max_length)
    train = tokenize_cached(train_rows, tokenizer, cfg, stats, "data.train", tokenize_conversations)
    evaluation = None
    if eval_rows:
        evaluation = tokenize_cached(eval_rows, tokenizer, cfg, stats, "data.eval", tokenize_conversations)
    stats.train_rows, stats.eval_rows = len(train), len(evaluation) if evaluation is not None else 0
    stats.train_tokens = int(sum(train["length"]))
    return PreparedData(train, evaluation, [], stats, tables.sha256, None, eval_rows)
