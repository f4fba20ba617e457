"""Prompt rows for sampled answers (train.objective grpo): a prompt, its reference, and the row's own columns.

Nothing here is learnt by copying: the model samples answers to each prompt and the rewards score them. The
rewards read the reference (data.response, when set) and the row's columns, so each example keeps them; the
prompt is rendered exactly as supervised training renders it (chat template, data.system), so a model tuned
with SFT and then with GRPO reads the same format in both. Everything but the rendering runs before any
model loads.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunesmith.cache import file_sha256
from tunesmith.config import RunConfig
from tunesmith.data.prepare import DataStats, PreparedData, Tables
from tunesmith.data.render import Pair
from tunesmith.data.tables import read_table
from tunesmith.data.templates import check_columns, render
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# A row's own columns reach the rewards under this prefix, apart from TRL's own keys (prompt, completion).
COLUMN_PREFIX = "column."


def reward_columns(cfg: RunConfig) -> dict[str, str]:
    """The columns the rewards read, by dotted key (train.rewards.0.column -> the column's name)."""
    named: dict[str, str] = {}
    for index, reward in enumerate(cfg.train.rewards):
        if reward.column:
            named[f"train.rewards.{index}.column"] = reward.column
        for position, column in enumerate(reward.columns or []):
            named[f"train.rewards.{index}.columns.{position}"] = column
    return named


def read_prompt_tables(cfg: RunConfig) -> Tables:
    """Read the data files; check the templates and every column a reward names (no model needed)."""
    data = cfg.data
    templates = {"data.prompt": data.prompt, "data.response": data.response}
    frames = {"data.train": data.train, **({"data.eval": data.eval} if data.eval is not None else {})}
    read: dict[str, pd.DataFrame] = {}
    for key, path in frames.items():
        frame = read_table(path, key)
        check_columns(templates, frame.columns, path)
        for reward_key, column in reward_columns(cfg).items():
            if column not in frame.columns:
                raise TunesmithError(
                    f"{reward_key}: column {column!r} is not in {path}",
                    hint=f"columns: {', '.join(map(str, frame.columns))}",
                )
        read[key] = frame
    return Tables(read["data.train"], read.get("data.eval"), {str(p): file_sha256(p) for p in frames.values()})


def prompt_records(frame: pd.DataFrame, cfg: RunConfig) -> tuple[list[dict[str, Any]], int]:
    """One record per usable row: prompt, reference, the row number (1 = first data row) and its columns."""
    data = cfg.data
    records, dropped = [], 0
    for number, row in enumerate(frame.to_dict(orient="records"), start=1):
        cells = {str(k): v for k, v in row.items()}
        prompt = render(data.prompt or "", cells)
        if not prompt:
            dropped += 1
            continue
        record: dict[str, Any] = {"prompt": prompt, "reference": render(data.response, cells) if data.response else ""}
        record["row"] = number
        record |= {COLUMN_PREFIX + k: _cell(v) for k, v in cells.items()}
        records.append(record)
    return records, dropped


def _cell(value: Any) -> str:
    # Every column as text, the way templates render it (empty for a missing value), so the dataset has one type.
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def prepare_prompt_data(cfg: RunConfig, tables: Tables, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """TRL's prompt-only dataset: the rendered prompt, plus the reference and columns the rewards read."""
    from datasets import Dataset

    from tunesmith.data.tokenize import prompt_text

    data = cfg.data
    train, dropped = prompt_records(tables.train, cfg)
    if not train:
        raise TunesmithError(f"data.train: {data.train}: no usable rows ({dropped} have an empty prompt)")
    train, held = split_records(train, tables, cfg)
    stats = DataStats(rows_read=len(tables.train), dropped_empty=dropped, max_length=data.max_length)
    stats.train_rows, stats.eval_rows = len(train), len(held)
    eval_pairs = [Pair(r["prompt"], r["reference"]) for r in held]  # before rendering: what eval generates from

    def dataset(records: list[dict[str, Any]]) -> Any:
        rendered = [{**r, "prompt": prompt_text(tokenizer, data, r["prompt"])} for r in records]
        return Dataset.from_list(rendered)

    lengths = tokenizer([prompt_text(tokenizer, data, r["prompt"]) for r in train], add_special_tokens=False)
    stats.train_tokens = sum(len(ids) for ids in lengths["input_ids"])
    stats.truncated = sum(1 for ids in lengths["input_ids"] if len(ids) > data.max_length)
    return PreparedData(dataset(train), dataset(held) if held else None, eval_pairs, stats, tables.sha256, None)


def split_records(
    records: list[dict[str, Any]], tables: Tables, cfg: RunConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) records: data.eval's rows, or data.eval_fraction of ``records`` held out with data.split_seed."""
    data = cfg.data
    if tables.eval is not None:
        return records, prompt_records(tables.eval, cfg)[0]
    if data.eval_fraction == 0 or len(records) < 2:
        return records, []
    order = list(range(len(records)))
    random.Random(data.split_seed).shuffle(order)
    held_out = set(order[: min(len(records) - 1, max(1, round(len(records) * data.eval_fraction)))])
    return [r for i, r in enumerate(records) if i not in held_out], [r for i, r in enumerate(records) if i in held_out]
