"""Preference data: rows -> (prompt, chosen, rejected) pairs, or KTO's (prompt, response, desirable) rows.

The text is rendered exactly as supervised training renders it (chat template, data.system, end-of-turn
marker), so a model tuned with SFT and then with a preference objective reads the same format in both.
TRL tokenises these texts itself. Everything here runs before any model loads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunesmith.cache import file_sha256
from tunesmith.config import DataConfig, RunConfig
from tunesmith.data.prepare import DataStats, PreparedData, Tables
from tunesmith.data.render import Pair
from tunesmith.data.tables import read_table
from tunesmith.data.templates import check_columns, render
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TRUE_WORDS = frozenset({"true", "yes", "1", "1.0", "y", "t"})
FALSE_WORDS = frozenset({"false", "no", "0", "0.0", "n", "f"})


@dataclass(frozen=True)
class PreferenceRow:
    """One rendered row: a prompt with a chosen and a rejected answer (KTO: one answer and whether it is good)."""

    prompt: str
    chosen: str
    rejected: str = ""
    desirable: bool | None = None  # set for KTO's single-answer rows only

    @property
    def paired(self) -> bool:
        """Whether the row is a chosen/rejected pair."""
        return self.desirable is None


def preference_templates(cfg: DataConfig) -> dict[str, str | None]:
    """The templates a preference run reads, by dotted key (pairs, or KTO's single answers)."""
    if cfg.chosen and cfg.rejected:
        return {"data.prompt": cfg.prompt, "data.chosen": cfg.chosen, "data.rejected": cfg.rejected}
    return {"data.prompt": cfg.prompt, "data.response": cfg.response}


def read_preference_tables(cfg: DataConfig) -> Tables:
    """Read the data files and check templates and the data.desirable column (no model needed)."""
    templates = preference_templates(cfg)
    frames = {"data.train": cfg.train, **({"data.eval": cfg.eval} if cfg.eval is not None else {})}
    read: dict[str, pd.DataFrame] = {}
    for key, path in frames.items():
        frame = read_table(path, key)
        check_columns(templates, frame.columns, path)
        if not (cfg.chosen and cfg.rejected) and cfg.desirable:
            desirable_flags(frame, cfg.desirable, path)
        read[key] = frame
    sha = {str(path): file_sha256(path) for path in frames.values()}
    return Tables(read["data.train"], read.get("data.eval"), sha)


def desirable_flags(frame: pd.DataFrame, column: str, source: Path) -> list[bool]:
    """The data.desirable column as booleans; any other value fails naming its row (1 = first data row)."""
    if column not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise TunesmithError(f"data.desirable: column {column!r} is not in {source}", hint=f"columns: {columns}")
    flags = []
    for number, value in enumerate(frame[column].tolist(), start=1):
        flag = _as_bool(value)
        if flag is None:
            raise TunesmithError(
                f"data.desirable: row {number} of {source} has {value!r} in column {column!r}, not a boolean",
                hint="use true or false; yes/no and 1/0 also work",
            )
        flags.append(flag)
    return flags


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else None


def render_preference_rows(frame: pd.DataFrame, cfg: DataConfig, source: Path) -> tuple[list[PreferenceRow], int]:
    """Render every row; rows with an empty prompt or an empty answer are dropped and counted."""
    templates = preference_templates(cfg)
    flags = (
        desirable_flags(frame, cfg.desirable, source)
        if "data.response" in templates and cfg.desirable
        else [None] * len(frame)
    )
    rows, dropped = [], 0
    records = [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]
    for record, flag in zip(records, flags, strict=True):
        texts = [render(t or "", record) for t in templates.values()]
        if any(not text for text in texts):
            dropped += 1
            continue
        rows.append(PreferenceRow(texts[0], texts[1], texts[2] if flag is None else "", flag))
    return rows, dropped


def split_rows(
    rows: list[PreferenceRow], cfg: DataConfig, eval_rows: list[PreferenceRow] | None
) -> tuple[list[PreferenceRow], list[PreferenceRow]]:
    """Train and eval rows: data.eval's rows, or data.eval_fraction held out with data.split_seed."""
    if eval_rows is not None:
        return rows, eval_rows
    if cfg.eval_fraction == 0 or len(rows) < 2:
        return rows, []
    order = list(range(len(rows)))
    random.Random(cfg.split_seed).shuffle(order)
    held_out = set(order[: min(len(rows) - 1, max(1, round(len(rows) * cfg.eval_fraction)))])
    return [r for i, r in enumerate(rows) if i not in held_out], [r for i, r in enumerate(rows) if i in held_out]


def preference_rows(cfg: DataConfig, tables: Tables) -> tuple[list[PreferenceRow], list[PreferenceRow], int]:
    """Rendered (train, eval) rows and how many rows were dropped as empty."""
    rows, dropped = render_preference_rows(tables.train, cfg, cfg.train)
    if not rows:
        raise TunesmithError(f"data.train: {cfg.train}: no usable rows ({dropped} have an empty prompt or answer)")
    held = None
    if tables.eval is not None and cfg.eval is not None:
        held, _ = render_preference_rows(tables.eval, cfg, cfg.eval)
        if not held:
            raise TunesmithError(f"data.eval: {cfg.eval}: no usable rows (every prompt or answer is empty)")
    train, evaluation = split_rows(rows, cfg, held)
    return train, evaluation, dropped


def prepare_preference_data(cfg: RunConfig, tables: Tables, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Rendered train/eval datasets in TRL's text format: prompt + chosen + rejected, or prompt + completion + label."""
    data = cfg.data
    train_rows, eval_rows, dropped = preference_rows(data, tables)
    stats = DataStats(rows_read=len(tables.train), dropped_empty=dropped, max_length=data.max_length)
    if cfg.train.objective == "kto":
        # KTO learns from single answers: a pair is one desirable and one undesirable row (TRL would unpair it
        # too, but into all chosen rows first, which a KTO batch, read in order, must not see).
        train_rows, eval_rows = unpaired(train_rows), unpaired(eval_rows)
    train = _dataset(train_rows, tokenizer, data, stats)
    evaluation = _dataset(eval_rows, tokenizer, data, stats, count=False) if eval_rows else None
    stats.train_rows, stats.eval_rows = len(train_rows), len(eval_rows)
    eval_pairs = [Pair(r.prompt, r.chosen) for r in eval_rows if r.paired or r.desirable]  # generation references
    return PreparedData(train, evaluation, eval_pairs, stats, tables.sha256, None)


def unpaired(rows: list[PreferenceRow]) -> list[PreferenceRow]:
    """Each pair as two single-answer rows: its chosen answer desirable, its rejected one not."""
    if not rows or not rows[0].paired:
        return rows
    good = [PreferenceRow(r.prompt, r.chosen, "", True) for r in rows]
    bad = [PreferenceRow(r.prompt, r.rejected, "", False) for r in rows]
    return [row for both in zip(good, bad, strict=True) for row in both]


def _dataset(
    rows: list[PreferenceRow], tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, stats: DataStats, count: bool = True
) -> Any:
    from datasets import Dataset

    from tunesmith.data.tokenize import prompt_text

    prompts = [prompt_text(tokenizer, cfg, r.prompt) for r in rows]
    answers = [_completion(tokenizer, cfg, r.prompt, r.chosen) for r in rows]
    paired = bool(rows) and rows[0].paired
    rejected = [_completion(tokenizer, cfg, r.prompt, r.rejected) for r in rows] if paired else []
    if count:
        # TRL truncates each prompt + answer to data.max_length; count what it will cut, and the tokens trained on.
        sequences = [p + a for p, a in zip(prompts, answers, strict=True)]
        sequences += [p + r for p, r in zip(prompts, rejected, strict=True)] if paired else []
        lengths = [len(ids) for ids in tokenizer(sequences, add_special_tokens=False)["input_ids"]] if sequences else []
        stats.train_tokens = sum(lengths)
        stats.truncated = sum(1 for n in lengths if n > cfg.max_length)
    if not paired:
        return Dataset.from_dict({"prompt": prompts, "completion": answers, "label": [bool(r.desirable) for r in rows]})
    return Dataset.from_dict({"prompt": prompts, "chosen": answers, "rejected": rejected})


def _completion(tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, prompt: str, answer: str) -> str:
    # The answer as SFT renders it, ending at the end-of-turn token: TRL appends EOS unless the text ends with
    # it, and a chat template's trailing newline would otherwise earn a second end-of-turn.
    from tunesmith.data.tokenize import response_text

    text = response_text(tokenizer, cfg, prompt, answer)
    eos = tokenizer.eos_token or ""
    stripped = text.rstrip()
    return stripped if eos and stripped.endswith(eos) else text
