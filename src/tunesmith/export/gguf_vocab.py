"""The tokenizer part of a GGUF file: a byte-level BPE ("gpt2") vocabulary, its merges and special tokens.

The token list and token types are built here from the tokenizer in memory; merges, special token ids and the
chat template are read by the ``gguf`` package's own ``SpecialVocab`` from the tokenizer saved to a folder,
which is what llama.cpp's converter does too.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from tunesmith.errors import TunesmithError

# llama.cpp names the way a vocabulary splits text before merging ("tokenizer.ggml.pre"); it picks its split
# rules by this name. Keys: (kind of pre-tokenizer, its regex or option) as found in tokenizer.json.
_QWEN2_SPLIT_START = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?"
_LLAMA3_SPLIT_START = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def add_vocab(writer: Any, tokenizer: Any, vocab_size: int, chat_template: str | None = None) -> str:
    """Add the tokenizer's metadata to ``writer``; returns the pre-tokenizer name written.

    ``chat_template``: written instead of the tokenizer's (a conversation run's fallback tool format).
    """
    import gguf

    spec = _backend_spec(tokenizer)
    tokens, types = token_table(tokenizer, vocab_size)
    pre = pre_tokenizer_name(spec)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="tunesmith-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    # Whether encoding starts with BOS is read off the tokenizer itself: SpecialVocab only infers it from some
    # post-processors, and llama.cpp's default for a gpt2 vocabulary (add BOS) is wrong for SmolLM2.
    special.add_special_token["bos"] = _adds_bos(tokenizer)
    special.add_special_token.setdefault("eos", False)
    if chat_template is not None:
        special.chat_template = chat_template
    elif getattr(tokenizer, "chat_template", None) and special.chat_template is None:
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
    return pre


def token_table(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id up to ``vocab_size`` (the embedding rows) with its text and GGUF type; gaps become padding."""
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    if max(by_id) >= vocab_size:
        raise TunesmithError(
            f"--to gguf: the tokenizer has ids up to {max(by_id)} but the model's embedding has {vocab_size} rows"
        )
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(UNUSED)
        elif index in added:
            tokens.append(token)
            types.append(CONTROL if added[index].special else USER_DEFINED)
        else:
            tokens.append(token)
            types.append(NORMAL)
    return tokens, types


def pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for how this tokenizer splits text ("default" when it is none of the known ones)."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"]:
        pattern = str((steps[0].get("pattern") or {}).get("Regex", ""))
        if pattern.startswith(_QWEN2_SPLIT_START):
            return "qwen2"
        if pattern.startswith(_LLAMA3_SPLIT_START):
            return "llama-bpe"
    return "default"


def _backend_spec(tokenizer: Any) -> dict[str, Any]:
    # Only a byte-level BPE maps onto llama.cpp's "gpt2" vocabulary; a sentencepiece one needs scores we do not
    # write, and a wrong vocabulary would make a file that loads but answers in garbage.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec: dict[str, Any] = json.loads(backend.to_str()) if backend is not None else {}
    model_type = (spec.get("model") or {}).get("type")
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(spec.get("decoder"))
    if model_type != "BPE" or not byte_level:
        kind = f"{model_type or type(tokenizer).__name__}{'' if byte_level else ' (not byte-level)'}"
        raise TunesmithError(
            f"--to gguf: the GGUF writer handles byte-level BPE tokenizers (gpt2-style); this one is {kind}",
            hint="--to merged works for this model",
        )
    return spec


def _adds_bos(tokenizer: Any) -> bool:
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id
