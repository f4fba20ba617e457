"""Which files the UI may read: only those under its roots (the working directory or --data-root, the runs dir).

A path from a request is always relative; ``..``, absolute paths and symlinks that lead out are refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from tunesmith.errors import TunesmithError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", "checkpoints"}
MAX_LISTED = 200
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_path(root: Path, relative: str, field: str) -> Path:
    """``root / relative`` resolved, refused unless it stays under ``root`` (``field`` names the request field)."""
    text = relative.strip()
    if not text:
        raise TunesmithError(f"{field}: empty path")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or text.startswith("~"):
        raise TunesmithError(f"{field}: {text!r}: absolute paths are refused; give a path under {root}")
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise TunesmithError(f"{field}: {text!r}: '..' is refused; give a path under {root}")
    resolved = (root / text).resolve()
    if not resolved.is_relative_to(root.resolve()):
        # Only a symlink can get here: the text itself stays inside.
        raise TunesmithError(f"{field}: {text!r} leads outside {root} (a symlink); refused")
    return resolved


def check_table(path: Path, field: str) -> None:
    """Refuse a path that is not an existing data table (``field`` names the request field)."""
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise TunesmithError(f"{field}: {path.name}: unsupported file type; use one of {', '.join(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise TunesmithError(f"{field}: {path}: file not found")


def relative_to_root(root: Path, path: Path) -> str:
    """How a path under ``root`` is written in a request."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def list_tables(root: Path, limit: int = MAX_LISTED, depth: int = 4) -> list[str]:
    """Data tables under ``root`` (relative paths), skipping hidden and tool directories and run directories."""
    root = root.resolve()
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        level = len(here.relative_to(root).parts)
        # Prune in place: os.walk then never enters them (a big .venv or a runs dir costs nothing).
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and level < depth)
        if "run.json" in files or "study.json" in files:
            dirs[:] = []
            continue
        for name in sorted(files):
            if Path(name).suffix.lower() in TABLE_SUFFIXES and (here / name).resolve().is_relative_to(root):
                found.append((here / name).relative_to(root).as_posix())
                if len(found) >= limit:
                    return found
    return found


def upload_name(filename: str) -> str:
    """A safe file name for an upload: its base name, odd characters replaced; a table suffix is required."""
    base = PureWindowsPath(PurePosixPath(filename or "").name).name
    stem, dot, suffix = base.rpartition(".")
    if not dot or f".{suffix.lower()}" not in TABLE_SUFFIXES:
        raise TunesmithError(f"file: {base!r}: unsupported file type; upload one of {', '.join(TABLE_SUFFIXES)}")
    stem = _UNSAFE_NAME.sub("_", stem).strip("._") or "upload"
    return f"{stem[:80]}.{suffix.lower()}"
