"""What the export tests share: prompts, the per-quant tolerances and the logit comparison."""

from __future__ import annotations

from typing import Any

SYSTEM = "You write short ads."
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order.",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
}
_CALL = {"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": {"id": "A1"}}}
CONVERSATION = [
    {"role": "user", "content": "Where is A1?"},
    {"role": "assistant", "content": "", "tool_calls": [_CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
    {"role": "assistant", "content": "It shipped."},
]
PROMPTS = ["Write an ad for coffee aimed at students.", "The quick brown fox jumps", "great product, terrible delivery"]

# How far a GGUF's logits may stray from the fp32 merged model, per tensor type: the largest absolute difference
# relative to the largest absolute logit, and the least share of positions whose top-1 token agrees.
# Measured, tiny llama run: f16 4.5e-4, bf16 2.3e-3, q8_0 1.5e-2 (top-1 0.988), q4_0 6.1e-2 (top-1 0.965).
# SmolLM2-135M: f16 1.1e-3, bf16 5.7e-3, q8_0 2.8e-2 (top-1 1.0 for all three), q4_0 0.41 (top-1 0.74-0.82).
TOLERANCES = {"f16": (5e-3, 0.98), "bf16": (2e-2, 0.95), "q8_0": (6e-2, 0.9), "q4_0": (0.6, 0.6)}


def logit_gap(reference: Any, other: Any, ids_list: list[list[int]]) -> tuple[float, float]:
    """(max |difference| / max |reference logit|, share of positions with the same top-1 token) over prompts."""
    import torch

    worst, scale, same, total = 0.0, 0.0, 0, 0
    for ids in ids_list:
        batch = torch.tensor([ids])
        with torch.inference_mode():
            want, got = reference(batch).logits[0].float(), other(batch).logits[0].float()
        worst = max(worst, (want - got).abs().max().item())
        scale = max(scale, want.abs().max().item())
        same += int((want.argmax(-1) == got.argmax(-1)).sum().item())
        total += want.shape[0]
    return worst / scale, same / total
