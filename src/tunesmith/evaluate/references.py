"""What ``tunesmith eval`` scores: distinct inputs, each with every reference answer it has.

Rows are rendered with the run's templates. Rows whose rendered prompt is the same become one input whose
references are all their responses; a response column may also hold a list of references (a JSON list in
a CSV cell, a real list in JSONL or Parquet), and each item becomes one reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.cache import file_sha256
from tunesmith.config import RunConfig
from tunesmith.data.prepare import Tables, prepare_data, read_tables, task_templates
from tunesmith.data.render import Pair, render_pairs
from tunesmith.data.tables import read_table
from tunesmith.data.templates import check_columns, render, template_columns
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class EvalExample:
    """One distinct input (the rendered prompt) and every reference answer to it."""

    prompt: str
    references: tuple[str, ...]


@dataclass
class EvalSource:
    """The rows to evaluate, read and checked before any model loads."""

    tables: Tables | None  # the run's own data: its eval split is re-created exactly as training made it
    frame: pd.DataFrame | None  # a --data file
    description: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSet:
    """Inputs to generate from, and the (input, reference) pairs of the teacher-forced loss."""

    examples: list[EvalExample]
    tokenized: list[dict[str, list[int]]]
    description: dict[str, Any]


def read_source(config: RunConfig, data: Path | None) -> EvalSource:
    """Read the run's data (for its eval split) or the ``--data`` file and check the template columns."""
    cfg = config.data
    templates = task_templates(cfg, config.task)
    if data is not None:
        frame = read_table(data, "--data")
        check_columns(templates, frame.columns, data)
        return EvalSource(None, frame, {"source": "file", "path": str(data), "sha256": file_sha256(data)})
    if cfg.eval is None and cfg.eval_fraction == 0:
        raise _no_eval_split(config)
    tables = read_tables(cfg, config.task)
    path = cfg.eval if cfg.eval is not None else cfg.train
    return EvalSource(tables, None, {"source": "eval_split", "path": str(path), "sha256": tables.sha256})


def build_eval_set(
    source: EvalSource, config: RunConfig, tokenizer: PreTrainedTokenizerBase, limit: int | None
) -> EvalSet:
    """Group the rows into inputs with their references, keep the first ``limit`` inputs, tokenise the loss pairs.

    The loss pairs follow ``eval.loss_references``: the first reference of each input, or all of them.
    """
    from tunesmith.data.tokenize import tokenize_pairs, tokenize_seq2seq

    pairs, frame = _pairs(source, config, tokenizer)
    lists = list_references(frame, *task_templates(config.data, config.task).values())
    examples = group_references(pairs, lists)[:limit]
    if not examples:
        raise _no_eval_split(config) if source.tables is not None else _no_rows(source)
    # The loss pairs: every reference, or (the default) the first of each input, so the loss costs less than
    # generating the answers however many references an input has.
    first = config.eval.loss_references == "first"
    flat = [Pair(e.prompt, ref) for e in examples for ref in (e.references[:1] if first else e.references)]
    encode = tokenize_seq2seq if config.task == "seq2seq" else tokenize_pairs
    tokenized, _ = encode(flat, tokenizer, config.data)
    if not tokenized:
        raise TunesmithError(f"data.max_length: no response token of the eval rows fits in {config.data.max_length}")
    references = sum(len(e.references) for e in examples)
    description = source.description | {"inputs": len(examples), "pairs": references, "limit": limit}
    description |= {"loss_references": config.eval.loss_references, "loss_pairs": len(flat)}
    return EvalSet(examples, tokenized, description)


def group_references(pairs: list[Pair], lists: dict[Pair, list[str]] | None = None) -> list[EvalExample]:
    """One example per distinct prompt (first-seen order); its references are every response it had.

    ``lists`` maps a pair whose response cell held a list to the references in that list.
    """
    grouped: dict[str, dict[str, None]] = {}
    for pair in pairs:
        references = (lists or {}).get(pair, [pair.response])
        grouped.setdefault(pair.prompt, {}).update(dict.fromkeys(references))
    return [EvalExample(prompt, tuple(refs)) for prompt, refs in grouped.items() if refs]


def list_references(frame: pd.DataFrame, prompt: str, response: str) -> dict[Pair, list[str]]:
    """For rows whose response column holds a list: their pair (as ``render_pairs`` makes it) -> the references."""
    columns = template_columns(response, "data.response")
    found: dict[Pair, list[str]] = {}
    for row in ({str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")):
        lists = {column: items for column in columns if (items := _as_list(row.get(column))) is not None}
        if not lists:
            continue
        if len(lists) > 1:
            raise TunesmithError(f"data.response: only one column may hold a list of references; found {list(lists)}")
        ((column, items),) = lists.items()
        references = [render(response, row | {column: item}) for item in items]
        found[Pair(render(prompt, row), render(response, row))] = [ref for ref in references if ref]
    return found


def _as_list(value: Any) -> list[Any] | None:
    # JSONL gives lists, Parquet numpy arrays, CSV the JSON text of a list.
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return list(value)
    return None


def _pairs(
    source: EvalSource, config: RunConfig, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[Pair], pd.DataFrame]:
    cfg = config.data
    if source.tables is not None:
        # The same call training made, so the split (seed, fraction, dropped rows) is the same.
        prepared = prepare_data(cfg, source.tables, tokenizer, config.task)
        frame = source.tables.eval if source.tables.eval is not None else source.tables.train
        return prepared.eval_pairs, frame
    assert source.frame is not None
    pairs, _ = render_pairs(source.frame, *task_templates(cfg, config.task).values())
    return pairs, source.frame


def _no_eval_split(config: RunConfig) -> TunesmithError:
    return TunesmithError(
        f"run {config.name!r} has no eval split (data.eval unset, data.eval_fraction {config.data.eval_fraction})",
        hint="evaluate on a file with --data FILE",
    )


def _no_rows(source: EvalSource) -> TunesmithError:
    path = source.description.get("path")
    return TunesmithError(f"--data {path}: no usable rows (every prompt or response is empty)")
