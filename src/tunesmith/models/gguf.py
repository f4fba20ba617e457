"""Convert a .gguf file once to a Hugging Face safetensors directory in the cache.

transformers can read GGUF directly, but dequantising takes ~20 s per load; the converted copy loads in
about a second. Two processes converting at once each build in a private temp directory and rename it
into place: the rename is atomic, the loser discards its copy.
"""

from __future__ import annotations

import shutil
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


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except (ValueError, KeyError, OSError) as err:
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
