"""Read a user's table (CSV, TSV, JSONL, Parquet) with errors that name the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from tunesmith.errors import TunesmithError

READERS: dict[str, Callable[[Path], Any]] = {
    ".csv": lambda p: pd.read_csv(p, encoding="utf-8", dtype=str, keep_default_na=False, na_values=[""]),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", encoding="utf-8", dtype=str, keep_default_na=False, na_values=[""]),
    ".jsonl": lambda p: pd.read_json(p, lines=True, encoding="utf-8", dtype=False),
    ".json": lambda p: pd.read_json(p, encoding="utf-8", dtype=False),
    ".parquet": pd.read_parquet,
}


def read_table(path: Path, key: str) -> pd.DataFrame:
    """Load ``path`` as a DataFrame; ``key`` (e.g. data.train) is named in every error."""
    if not path.exists():
        raise TunesmithError(f"{key}: {path}: file not found")
    if path.is_dir():
        raise TunesmithError(f"{key}: {path}: is a directory, expected a file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise TunesmithError(f"{key}: {path}: unsupported file type {path.suffix!r}; use {', '.join(READERS)}")
    if path.stat().st_size == 0:
        raise TunesmithError(f"{key}: {path}: file is empty")
    try:
        frame = reader(path)
    except UnicodeDecodeError as err:
        raise TunesmithError(
            f"{key}: {path}: not UTF-8 text (invalid byte at offset {err.start})",
            hint="re-save the file as UTF-8",
        ) from err
    except (ValueError, pd.errors.ParserError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TunesmithError(f"{key}: {path}: cannot parse: {first_line}") from err
    if frame.empty:
        raise TunesmithError(f"{key}: {path}: has a header but no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame
