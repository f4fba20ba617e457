"""Attention over packed rows that costs what the rows cost alone.

A packed batch is one long sequence of several rows. transformers' sdpa path masks it with a
block-diagonal mask, which is correct but computes the full square: 8 rows of 120 tokens cost like one
row of 960, eight times the attention work. This kernel runs causal sdpa on each row's slice instead
(the boundaries come from the collator's ``cu_seq_lens_q``), so the cost is the sum of the rows' squares
and no mask is read. Without boundaries (generation, padded batches) it is exactly transformers' sdpa.
"""

from __future__ import annotations

import itertools
from typing import Any

VARLEN = "tunesmith_varlen"


def varlen_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention-interface function: per-row causal sdpa over a packed sequence."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    edges = bounds.tolist()
    # Grouped-query attention: sdpa's enable_gqa path is ~1.8x slower on CPU for short rows than expanding
    # the shared key/value heads once for the whole packed sequence.
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    pieces = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            is_causal=True,
            dropout_p=dropout,
            scale=scaling,
        )
        for start, end in itertools.pairwise(edges)
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def use_varlen_attention(model: Any) -> None:
    """Switch a (peft-wrapped or plain) transformers model to the per-row kernel."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, sdpa_mask)  # the fallback path reads sdpa's masks
    _base(model).set_attn_implementation(VARLEN)


def use_default_attention(model: Any) -> None:
    """Back to sdpa (before saving, so the saved config names an implementation every loader knows)."""
    base = _base(model)
    if base.config._attn_implementation == VARLEN:
        base.set_attn_implementation("sdpa")


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model
