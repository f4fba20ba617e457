"""Rows -> (prompt, response) text pairs, dropping and counting rows with nothing to learn from."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tunesmith.data.templates import render, template_columns


@dataclass(frozen=True)
class Pair:
    """One example as text: what the model is asked and what it should answer."""

    prompt: str
    response: str


def render_pairs(frame: pd.DataFrame, prompt: str, response: str) -> tuple[list[Pair], int]:
    """Render every row; rows whose prompt or response columns are all empty are dropped and counted."""
    prompt_columns = template_columns(prompt, "data.prompt")
    response_columns = template_columns(response, "data.response")
    pairs: list[Pair] = []
    dropped = 0
    for row in _records(frame):
        if _all_empty(row, prompt_columns) or _all_empty(row, response_columns):
            dropped += 1
            continue
        pairs.append(Pair(render(prompt, row), render(response, row)))
    return pairs, dropped


def _all_empty(row: dict[str, object], columns: list[str]) -> bool:
    if not columns:
        return False
    return all(render("{" + column + "}", row) == "" for column in columns)


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]
