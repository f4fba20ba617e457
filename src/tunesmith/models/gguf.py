"""Convert a .gguf file once to a Hugging Face safetensors directory in the cache.

transformers can read GGUF directly, but dequantising takes ~20 s per load; the converted copy loads in
about a second. Two processes converting at once each build in a private temp directory and rename it
into place: the rename is atomic, the loser discards its copy.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from tunesmith.cache import cache_root, file_sha256
from tunesmith.errors import TunesmithError


def gguf_cache_dir(gguf_path: Path) -> Path:
    """Where the converted copy of this exact file lives (keyed by content fingerprint)."""
    return cache_root() / "gguf" / f"{gguf_path.stem}-{file_sha256(gguf_path)[:16]}"


def converted_gguf(gguf_path: Path) -> Path:
    """Return a Hugging Face directory for ``gguf_path``, converting it on first use."""
    target = gguf_cache_dir(gguf_path)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert(gguf_path, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # Another process finished first; its copy is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# What a GGUF parser raises on a damaged file: its offsets and lengths point past the end or into garbage.
_PARSE_ERRORS = (struct.error, ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, OSError)


def check_readable(gguf_path: Path) -> None:
    """Fail in one line naming the file when it is not a whole GGUF file (empty, not GGUF, truncated, corrupt).

    Reads the header and the tensor table only (a fraction of a second), then checks that every tensor's
    bytes lie inside the file: a truncated download parses fine up to the point where its data stops.
    """
    size = gguf_path.stat().st_size
    with gguf_path.open("rb") as handle:
        magic = handle.read(4)
    if size == 0 or magic != b"GGUF":
        why = "the file is empty" if size == 0 else "it does not start with the GGUF magic bytes"
        raise TunesmithError(f"model.name {gguf_path}: not a readable GGUF file: {why}")
    try:
        end = _tensor_data_end(gguf_path)
    except _PARSE_ERRORS as err:
        kind = "struct.error" if isinstance(err, struct.error) else type(err).__name__
        raise _unreadable(gguf_path, f"{kind}: {err}") from err
    if end > size:
        raise _unreadable(gguf_path, f"its tensors need {end:,} bytes but the file has {size:,}")


def _unreadable(gguf_path: Path, detail: str) -> TunesmithError:
    return TunesmithError(
        f"model.name {gguf_path}: not a readable GGUF file, it is truncated or corrupt ({detail})",
        hint="download or export it again",
    )


def _tensor_data_end(gguf_path: Path) -> int:
    # transformers' own GGUF header reader (the one loading uses) is fast: it skips the vocabulary strings.
    # Older transformers 5 releases lack it; the gguf package's reader checks the same, more slowly.
    try:
        from transformers.integrations.gguf.reader import GgufHeader
    except ImportError:
        from gguf import GGUFReader

        reader = GGUFReader(gguf_path)  # maps every tensor, so it raises itself on a truncated file
        return max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    header = GgufHeader.from_file(str(gguf_path))
    return max((header.data_start + t.offset + t.nbytes for t in header.tensors), default=header.data_start)


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_readable(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except _PARSE_ERRORS as err:
        raise TunesmithError(f"model.name {gguf_path}: cannot read this GGUF file: {err}") from err
    _without_gguf_quantizer(model).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _without_gguf_quantizer(model: Any) -> Any:
    # Loading dequantises every tensor to fp32, but the model keeps a GGUF "quantizer" that refuses to save;
    # a fresh model of the same architecture holding the same tensors saves as plain safetensors.
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(model.state_dict())
    return clean
