"""The data pipeline: read -> check columns -> render -> split -> tokenise (cached)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunesmith.cache import cache_root, file_sha256
from tunesmith.config import DataConfig, Task
from tunesmith.console import say
from tunesmith.data.labels import label_names, stratified_holdout
from tunesmith.data.render import Pair, render_pairs
from tunesmith.data.single_turn import SINGLE_TURN
from tunesmith.data.tables import read_table
from tunesmith.data.templates import check_columns
from tunesmith.data.tokenize import TokenizeStats
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

# Any rows (text pairs, conversations) -> examples and counts; Encoder is the text-pair kind.
RowEncoder = Callable[[list[Any], "PreTrainedTokenizerBase", DataConfig], tuple[list[dict[str, Any]], TokenizeStats]]

# Bump when tokenisation changes meaning, so stale caches are never reused.
CACHE_VERSION = "1"


@dataclass
class Tables:
    """The raw tables and their sha256, read and checked before any model loads."""

    train: pd.DataFrame
    eval: pd.DataFrame | None
    sha256: dict[str, str]


@dataclass
class DataStats:
    """Counts printed after preparation and saved in run.json."""

    rows_read: int = 0
    dropped_empty: int = 0
    truncated: int = 0
    dropped_truncated: int = 0
    train_rows: int = 0
    eval_rows: int = 0
    train_tokens: int = 0
    max_length: int = 0
    unseen_labels: int = 0
    label_counts: dict[str, int] | None = None
    cached: bool = False

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"{self.train_rows} train / {self.eval_rows} eval rows, {self.train_tokens:,} train tokens; "
            f"dropped {self.dropped_empty} empty, truncated {self.truncated} over max_length={self.max_length}"
            + (f" ({self.dropped_truncated} dropped: nothing left to learn)" if self.dropped_truncated else "")
        )


@dataclass
class PreparedData:
    """Tokenised splits plus the text pairs they came from (for classification: text and label name)."""

    train: Dataset
    eval: Dataset | None
    eval_pairs: list[Pair]
    stats: DataStats
    sha256: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None
    eval_conversations: list[Any] = field(default_factory=list)  # conversation data: the eval split's rows


def task_templates(cfg: DataConfig, task: Task = "causal_lm") -> dict[str, str]:
    """The task's (input, target) templates by dotted key; a label column becomes the template ``{column}``."""
    spec = SINGLE_TURN[task]
    input_key, target_key = spec.keys
    source, target = getattr(cfg, input_key.removeprefix("data.")), getattr(cfg, target_key.removeprefix("data."))
    if source is None or target is None:
        raise TunesmithError(f"{input_key} and {target_key} are required for task {task}")
    if spec.labelled:
        target = "{" + target + "}"
    return {input_key: source, target_key: target}


def read_tables(cfg: DataConfig, task: Task = "causal_lm") -> Tables:
    """Read the data files and check the templates against their columns (cheap: no model needed)."""
    templates = task_templates(cfg, task)
    train = read_table(cfg.train, "data.train")
    check_columns(templates, train.columns, cfg.train)
    sha = {str(cfg.train): file_sha256(cfg.train)}
    evaluation = None
    if cfg.eval is not None:
        evaluation = read_table(cfg.eval, "data.eval")
        check_columns(templates, evaluation.columns, cfg.eval)
        sha[str(cfg.eval)] = file_sha256(cfg.eval)
    return Tables(train, evaluation, sha)


def prepare_data(
    cfg: DataConfig, tables: Tables, tokenizer: PreTrainedTokenizerBase, task: Task = "causal_lm"
) -> PreparedData:
    """Render, split and tokenise; tokenised splits are cached by content, template, task and tokenizer."""
    templates = list(task_templates(cfg, task).values())
    stats = DataStats(rows_read=len(tables.train), max_length=cfg.max_length)
    pairs, stats.dropped_empty = render_pairs(tables.train, *templates)
    if not pairs:
        raise TunesmithError(
            f"data.train: {cfg.train}: no usable rows ({stats.dropped_empty} have an empty input or target)"
        )
    spec = SINGLE_TURN[task]
    labels = label_names(pairs, cfg) if spec.labelled else None
    if labels is not None:
        stats.label_counts = dict(Counter(p.response for p in pairs))
    train_pairs, eval_pairs = _split(pairs, cfg, tables, templates, stratify=labels is not None)
    encode = spec.encoder(labels)
    train = tokenize_cached(train_pairs, tokenizer, cfg, stats, "data.train", encode)
    evaluation = tokenize_cached(eval_pairs, tokenizer, cfg, stats, "data.eval", encode) if eval_pairs else None
    if evaluation is not None and labels is not None:
        evaluation = _without_unseen_labels(evaluation, stats)
    stats.train_rows, stats.eval_rows = len(train), len(evaluation) if evaluation is not None else 0
    stats.train_tokens = int(sum(train["length"]))
    return PreparedData(train, evaluation, eval_pairs, stats, tables.sha256, labels)


def _without_unseen_labels(evaluation: Dataset, stats: DataStats) -> Dataset | None:
    # The eval loss cannot score a class the head does not have; `tunesmith eval` scores such rows as errors.
    unseen = sum(1 for label in evaluation["labels"] if label < 0)
    stats.unseen_labels = unseen
    if unseen:
        say(f"data.eval: {unseen} rows have labels never seen in training; left out of the eval loss")
    kept = evaluation.filter(lambda row: row["labels"] >= 0)
    return kept if len(kept) else None


def _split(
    pairs: list[Pair], cfg: DataConfig, tables: Tables, templates: list[str], stratify: bool
) -> tuple[list[Pair], list[Pair]]:
    if tables.eval is not None:
        eval_pairs, _ = render_pairs(tables.eval, *templates)
        if not eval_pairs:
            raise TunesmithError(f"data.eval: {cfg.eval}: no usable rows (every input or target is empty)")
        return pairs, eval_pairs
    if cfg.eval_fraction == 0 or len(pairs) < 2:
        return pairs, []
    held_out = stratified_holdout(pairs, cfg) if stratify else _random_holdout(len(pairs), cfg)
    return (
        [p for i, p in enumerate(pairs) if i not in held_out],
        [p for i, p in enumerate(pairs) if i in held_out],
    )


def _random_holdout(n_rows: int, cfg: DataConfig) -> set[int]:
    order = list(range(n_rows))
    random.Random(cfg.split_seed).shuffle(order)
    n_eval = min(n_rows - 1, max(1, round(n_rows * cfg.eval_fraction)))
    return set(order[:n_eval])


def tokenize_cached(
    pairs: list[Any],
    tokenizer: PreTrainedTokenizerBase,
    cfg: DataConfig,
    stats: DataStats,
    key: str,
    encode: RowEncoder,
) -> Dataset:
    """``encode`` the rows (pairs, conversations) into a Dataset, reused from the cache when nothing changed."""
    from datasets import Dataset, load_from_disk

    cache_dir = cache_root() / "tokens" / _cache_key(pairs, tokenizer, cfg, encode)
    if (cache_dir / "meta.json").is_file():
        meta = json.loads((cache_dir / "meta.json").read_text())
        _add_counts(stats, meta, key, cfg)
        stats.cached = True
        return load_from_disk(str(cache_dir / "dataset"))
    examples, tok_stats = encode(pairs, tokenizer, cfg)
    meta = {
        "truncated": tok_stats.truncated,
        "dropped_truncated": tok_stats.dropped_truncated,
        "rows": len(pairs),
        "shortest": min(tok_stats.lengths, default=0),
        "cuts_keep_turns": tok_stats.cuts_keep_turns,
    }
    _add_counts(stats, meta, key, cfg)
    dataset = Dataset.from_dict(
        {
            "input_ids": [e["input_ids"] for e in examples],
            "labels": [e["labels"] for e in examples],
            "length": [len(e["input_ids"]) for e in examples],
        }
    )
    _save_atomically(dataset, meta, cache_dir)
    return dataset


def _add_counts(stats: DataStats, meta: dict[str, Any], key: str, cfg: DataConfig) -> None:
    # A conversation cut after an assistant turn still trains; a single row cut mid-answer loses its end.
    if meta["rows"] and meta["truncated"] == meta["rows"] and not meta.get("cuts_keep_turns"):
        raise TunesmithError(
            f"data.max_length: every row of {key} is longer than {cfg.max_length} tokens "
            f"(the shortest has {meta['shortest']})",
            hint="raise data.max_length or shorten the templates",
        )
    if meta["dropped_truncated"] == meta["rows"]:
        raise TunesmithError(f"data.max_length: no response token of {key} fits in {cfg.max_length} tokens")
    stats.truncated += meta["truncated"]
    stats.dropped_truncated += meta["dropped_truncated"]


def _save_atomically(dataset: Dataset, meta: dict[str, Any], cache_dir: Path) -> None:
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir.parent))
    try:
        dataset.save_to_disk(str(staging / "dataset"))
        (staging / "meta.json").write_text(json.dumps(meta))
        staging.rename(cache_dir)
    except OSError:
        if not (cache_dir / "meta.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cache_key(pairs: list[Any], tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, encode: RowEncoder) -> str:
    digest = hashlib.sha256(CACHE_VERSION.encode())
    digest.update(repr(getattr(encode, "func", encode).__name__).encode())
    digest.update(json.dumps(getattr(encode, "keywords", {}), sort_keys=True).encode())
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k in _TOKENIZE_KEYS}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    for pair in pairs:
        digest.update(json.dumps(asdict(pair), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


_TOKENIZE_KEYS = {"system", "chat_template", "max_length", "loss_on"}


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash that changes whenever the tokenizer would produce different ids or templates."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else str(tokenizer.get_vocab()).encode())
    digest.update(str(getattr(tokenizer, "chat_template", "")).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return digest.hexdigest()
