"""Where tunesmith keeps what it can rebuild (converted models, tokenised data), and content hashes of files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """tunesmith's cache directory: $TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks so a large file never sits in memory whole."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
