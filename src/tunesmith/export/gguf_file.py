"""Write a Hugging Face causal LM of the llama family as one GGUF file (llama.cpp's format).

Metadata keys and tensor names follow llama.cpp's ``convert_hf_to_gguf.py``; the bytes are written by the
``gguf`` package's ``GGUFWriter`` and quantised by its numpy quantisers. Four things decide whether a file is
right, and each is checked by a round trip through transformers' GGUF loader in the tests:

- llama.cpp's ``llama`` architecture applies rotary embeddings to interleaved pairs, Hugging Face's Llama to
  the two halves of each head, so ``q_proj`` and ``k_proj`` rows are permuted on the way out (Qwen2/3 use the
  halves layout in llama.cpp too and are written unpermuted);
- a tied output layer is not written (llama.cpp reuses ``token_embd``);
- norms and biases stay F32 (llama.cpp does the same for every file type);
- a tensor whose rows do not split into quantisation blocks is written in F16 instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError
from tunesmith.export.gguf_vocab import add_vocab

if TYPE_CHECKING:
    import numpy as np

QUANTS = ("f16", "bf16", "q8_0", "q4_0")


@dataclass(frozen=True)
class Architecture:
    """How one Hugging Face architecture maps onto a llama.cpp architecture."""

    gguf_name: str
    permute_qk: bool  # llama.cpp's "llama" rope pairs neighbouring dims; HF's rotate_half pairs halves
    qk_norm: bool = False  # Qwen3 normalises each head's q and k


ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": Architecture("llama", permute_qk=True),  # SmolLM, SmolLM2, Llama 2/3
    "MistralForCausalLM": Architecture("llama", permute_qk=True),  # llama.cpp runs Mistral as llama
    "Qwen2ForCausalLM": Architecture("qwen2", permute_qk=False),
    "Qwen3ForCausalLM": Architecture("qwen3", permute_qk=False, qk_norm=True),
}

# Per layer: Hugging Face module path -> llama.cpp tensor name (".weight"/".bias" are appended to both).
_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_GLOBAL_TENSORS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}


def architecture_of(model: Any) -> Architecture:
    """The llama.cpp mapping for ``model``, or one clear error naming what is not handled."""
    names = list(getattr(model.config, "architectures", None) or [type(model).__name__])
    arch = ARCHITECTURES.get(names[0])
    if arch is None:
        raise TunesmithError(
            f"--to gguf: the GGUF writer does not handle the {names[0]} architecture",
            hint=f"it writes {', '.join(sorted(ARCHITECTURES))}; --to merged works for any model",
        )
    rope = getattr(model.config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise TunesmithError(
            f"--to gguf: rope scaling {rope.get('rope_type')!r} of {names[0]} is not handled by the GGUF writer",
            hint="--to merged works for this model",
        )
    return arch


def write_gguf(model: Any, tokenizer: Any, path: Path, quant: str, name: str, chat_template: str | None = None) -> None:
    """Write ``model`` (fp32, adapters merged) and its tokenizer to ``path`` as a ``quant`` GGUF file.

    ``chat_template``: the template to carry when it is not the tokenizer's own (``export.chat_template``).

    The file appears only when complete: it is written beside ``path`` under a temporary name, then renamed.
    """
    import gguf

    arch = architecture_of(model)
    if quant not in QUANTS:
        raise TunesmithError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temp, arch.gguf_name)
        _add_hparams(writer, model.config, arch, quant, name)
        add_vocab(writer, tokenizer, model.config.vocab_size, chat_template)
        for tensor_name, data, qtype in _tensors(model, arch, quant):
            writer.add_tensor(tensor_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _add_hparams(writer: Any, config: Any, arch: Architecture, quant: str, name: str) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    if arch.gguf_name == "llama":
        writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads or arch.qk_norm:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{quant.upper()}"])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tensors(model: Any, arch: Architecture, quant: str) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(GGUF name, data, GGML type) for every tensor, in llama.cpp's order."""
    config = model.config
    state = {key: value.detach().float().cpu().numpy() for key, value in model.state_dict().items()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, gguf_name in _GLOBAL_TENSORS.items():
        yield _encoded(gguf_name, state.pop(hf_name), quant)
    lm_head = state.pop("lm_head.weight", None)
    if lm_head is not None and not tied:
        yield _encoded("output.weight", lm_head, quant)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    for layer in range(config.num_hidden_layers):
        for hf_module, gguf_module in _LAYER_TENSORS.items():
            for kind in ("weight", "bias"):
                data = state.pop(f"model.layers.{layer}.{hf_module}.{kind}", None)
                if data is None:
                    continue
                if arch.permute_qk and gguf_module in ("attn_q", "attn_k"):
                    data = _permute(data, heads if gguf_module == "attn_q" else kv_heads)
                yield _encoded(f"blk.{layer}.{gguf_module}.{kind}", data, quant)
    leftover = sorted(key for key in state if not key.endswith("rotary_emb.inv_freq"))
    if leftover:
        # A tensor we do not know where to put would silently be lost: refuse instead.
        raise TunesmithError(
            f"--to gguf: {type(model).__name__} has tensors the GGUF writer does not map: {', '.join(leftover[:3])}"
        )


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from the halves layout to llama.cpp's interleaved rotary pairs."""
    shape = weights.shape
    return weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _encoded(name: str, data: np.ndarray, quant: str) -> tuple[str, np.ndarray, Any]:
    import gguf
    import numpy as np

    if data.ndim < 2:
        return name, data.astype(np.float32), gguf.GGMLQuantizationType.F32
    qtype = _tensor_type(name, quant, gguf)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if data.shape[-1] % block:
        qtype = gguf.GGMLQuantizationType.F16  # rows that do not split into blocks (llama.cpp falls back too)
    return name, gguf.quants.quantize(data.astype(np.float32), qtype), qtype


def _tensor_type(name: str, quant: str, gguf: Any) -> Any:
    types = gguf.GGMLQuantizationType
    if quant == "q4_0" and name in ("token_embd.weight", "output.weight"):
        # As llama-quantize does for its 4-bit types, the embedding/output layer keeps more precision: with tied
        # embeddings (SmolLM2) it is also the output layer, and 4 bits there cost most of the quality.
        return types.Q8_0
    return types[quant.upper()]
