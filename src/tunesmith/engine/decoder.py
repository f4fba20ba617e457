"""The decode loop's model side: a KV cache with one slot per row, a batched prefill and a batched decode step.

Rows live in slots 0..n-1 of a cache allocated up front (grown by doubling when a longer or wider batch needs
it), each at its own position, so a row can join or leave between any two steps: a joining row's prompt is
prefilled (with the other joiners, right-padded, causal), a leaving row's slot is filled by the last row.
A step is a fixed sequence of tensor operations whatever the batch holds; nothing in it loops over rows.
"""

from __future__ import annotations

from typing import Any

from tunesmith.engine.weights import Layer, Projection, Weights


class Decoder:
    """Runs ``weights`` over a batch of rows; rows are identified by their slot index."""

    def __init__(self, weights: Weights, dtype: Any, context: int | None) -> None:
        import torch

        self.weights, self.dtype = weights, dtype
        self.context = context if context is not None else weights.cos.shape[0]
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.slots_capacity = 0
        self.length_capacity = 0
        self.positions = torch.zeros(0, dtype=torch.long)  # per row: where its next token goes
        self.adapter_mask = torch.zeros(0, weights.lora_width, dtype=dtype)  # per row: its adapter's rank columns
        self.uses_adapters = False

    @property
    def rows(self) -> int:
        """Rows in the batch now."""
        return int(self.positions.shape[0])

    def reserve(self, rows: int, length: int) -> None:
        """Make room for ``rows`` rows of up to ``length`` tokens, keeping what the cache holds."""
        import torch

        if rows <= self.slots_capacity and length <= self.length_capacity:
            return
        # Grow only what is short, by doubling: a few reallocations over a server's life, none per step.
        slots = self.slots_capacity if rows <= self.slots_capacity else max(rows, min(2 * self.slots_capacity, 256))
        span = self.length_capacity
        if length > self.length_capacity:
            span = min(max(length, 2 * self.length_capacity, 64), max(self.context, length))
        w = self.weights
        shape = (slots, w.kv_heads, span, w.head_dim)
        keys = [torch.zeros(shape, dtype=self.dtype) for _ in w.layers]
        values = [torch.zeros(shape, dtype=self.dtype) for _ in w.layers]
        n, old = self.rows, self.length_capacity
        for new, kept in ((keys, self.keys), (values, self.values)):
            for layer, tensor in zip(new, kept, strict=False):
                layer[:n, :, :old] = tensor[:n]
        self.keys, self.values = keys, values
        self.slots_capacity, self.length_capacity = slots, span

    def prefill(self, prompts: list[list[int]], adapters: list[int]) -> Any:
        """Add one row per prompt (``adapters``: each row's adapter index, -1 for none); their next-token logits."""
        import torch

        with torch.inference_mode():
            return self._prefill(prompts, adapters)

    def _prefill(self, prompts: list[list[int]], adapters: list[int]) -> Any:
        import torch

        count, width = len(prompts), max(len(p) for p in prompts)
        first = self.rows
        self.reserve(first + count, width + 1)
        ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
        lengths = torch.tensor([len(p) for p in prompts])
        mask = self._mask_rows(adapters)
        self.positions = torch.cat([self.positions, lengths])
        self.adapter_mask = torch.cat([self.adapter_mask, mask])
        self.uses_adapters = bool(self.adapter_mask.any())
        w = self.weights
        x = w.embed[ids.reshape(-1)]
        cos, sin = w.cos[:width][None, None], w.sin[:width][None, None]  # [1, 1, T, d]: every row starts at 0
        token_mask = _member_masks(mask.repeat_interleave(width, dim=0)) if bool(mask.any()) else None
        for index, layer in enumerate(w.layers):
            x = self._prefill_layer(layer, index, x, count, width, first, cos, sin, token_mask)
        last = x.reshape(count, width, -1)[torch.arange(count), lengths - 1]
        return self._logits(last)

    def step(self, tokens: Any) -> Any:
        """Feed each row its next token (a [rows] tensor); their next-token logits [rows, vocab]."""
        import torch

        with torch.inference_mode():
            return self._step(tokens)

    def _step(self, tokens: Any) -> Any:
        import torch

        n, w = self.rows, self.weights
        positions = self.positions
        longest = int(positions.max()) + 1
        self.reserve(n, longest)
        x = w.embed[tokens]
        cos, sin = w.cos[positions][:, None, None], w.sin[positions][:, None, None]  # [n, 1, 1, d]
        # Rows of one length need no mask (and then run the kernel a lone generate runs).
        ragged = bool((positions != positions[0]).any())
        attend = None
        if ragged:
            visible = torch.arange(longest).unsqueeze(0) <= positions.unsqueeze(1)
            hidden = ~visible[:, None, None, :]
            attend = torch.zeros(n, 1, 1, longest, dtype=self.dtype).masked_fill(hidden, float("-inf"))
        rows = torch.arange(n)
        token_mask = _member_masks(self.adapter_mask) if self.uses_adapters else None
        for index, layer in enumerate(w.layers):
            x = self._step_layer(layer, index, x, rows, positions, longest, cos, sin, attend, token_mask)
        self.positions = positions + 1
        return self._logits(x)

    def drop(self, row: int) -> None:
        """Remove ``row``; the last row moves into its slot (callers renumber it)."""
        import torch

        with torch.inference_mode():
            self._drop(row)

    def _drop(self, row: int) -> None:
        import torch

        last = self.rows - 1
        if row != last:
            span = int(self.positions[last])
            for tensor in (*self.keys, *self.values):
                tensor[row, :, :span] = tensor[last, :, :span]
            self.positions[row] = self.positions[last]
            self.adapter_mask[row] = self.adapter_mask[last]
        keep = torch.arange(last)
        self.positions = self.positions[keep].clone()
        self.adapter_mask = self.adapter_mask[keep].clone()
        self.uses_adapters = bool(self.adapter_mask.any())

    def _mask_rows(self, adapters: list[int]) -> Any:
        import torch

        w = self.weights
        mask = torch.zeros(len(adapters), w.lora_width, dtype=self.dtype)
        for row, adapter in enumerate(adapters):
            if adapter >= 0:
                mask[row, adapter * w.rank : (adapter + 1) * w.rank] = 1
        return mask

    def _prefill_layer(
        self, layer: Layer, index: int, x: Any, count: int, width: int, first: int, cos: Any, sin: Any, mask: Any
    ) -> Any:
        import torch.nn.functional as F

        w = self.weights
        h = F.rms_norm(x, (x.shape[-1],), layer.input_norm, w.eps).to(self.dtype)
        qkv = _project(layer.qkv, h, mask, 3).reshape(count, width, -1)
        q, k, v = _split_heads(qkv, w)  # [count, heads, T, d]
        q, k = _rope(q, cos, sin).to(self.dtype), _rope(k, cos, sin).to(self.dtype)
        self.keys[index][first : first + count, :, :width] = k
        self.values[index][first : first + count, :, :width] = v
        # Right padding under a causal mask: a real token never sees a pad, and pads are never read later.
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=w.heads != w.kv_heads)
        attn = attn.transpose(1, 2).reshape(count * width, -1)
        return self._mlp(layer, x + _project(layer.o, attn, mask, 1), mask)

    def _step_layer(
        self,
        layer: Layer,
        index: int,
        x: Any,
        rows: Any,
        positions: Any,
        longest: int,
        cos: Any,
        sin: Any,
        attend: Any,
        mask: Any,
    ) -> Any:
        import torch.nn.functional as F

        w, n = self.weights, x.shape[0]
        h = F.rms_norm(x, (x.shape[-1],), layer.input_norm, w.eps).to(self.dtype)
        qkv = _project(layer.qkv, h, mask, 3).reshape(n, 1, -1)
        q, k, v = _split_heads(qkv, w)  # [n, heads, 1, d]
        q, k = _rope(q, cos, sin).to(self.dtype), _rope(k, cos, sin).to(self.dtype)
        keys, values = self.keys[index], self.values[index]
        keys[rows, :, positions] = k[:, :, 0]
        values[rows, :, positions] = v[:, :, 0]
        attn = F.scaled_dot_product_attention(
            q, keys[:n, :, :longest], values[:n, :, :longest], attn_mask=attend, enable_gqa=w.heads != w.kv_heads
        )
        attn = attn.reshape(n, -1)
        return self._mlp(layer, x + _project(layer.o, attn, mask, 1), mask)

    def _mlp(self, layer: Layer, x: Any, mask: Any) -> Any:
        import torch.nn.functional as F

        h = F.rms_norm(x, (x.shape[-1],), layer.post_norm, self.weights.eps).to(self.dtype)
        gate, up = _project(layer.gate_up, h, mask, 2).chunk(2, dim=-1)
        return x + _project(layer.down, F.silu(gate) * up, mask, 1)

    def _logits(self, x: Any) -> Any:
        import torch.nn.functional as F

        w = self.weights
        return F.linear(F.rms_norm(x, (x.shape[-1],), w.final_norm, w.eps).to(self.dtype), w.lm_head).float()


def _project(projection: Projection, x: Any, mask: Any, members: int) -> Any:
    """The fused projection of ``x`` [tokens, in]; with adapters, each token's own adapter added."""
    import torch.nn.functional as F

    y = F.linear(x, projection.weight)
    if projection.lora_b is None:
        return y
    base, low = y[:, : projection.out], y[:, projection.out :]
    if mask is None:  # no row uses an adapter
        return base
    return base + F.linear(low * mask[members], projection.lora_b)


def _member_masks(mask: Any) -> dict[int, Any]:
    """The per-token rank mask repeated for groups of 1, 2 and 3 fused projections, built once per call."""
    return {members: mask.repeat(1, members) if members > 1 else mask for members in (1, 2, 3)}


def _split_heads(qkv: Any, w: Weights) -> tuple[Any, Any, Any]:
    """[rows, T, (heads + 2 kv_heads) * d] -> q [rows, heads, T, d], k and v [rows, kv_heads, T, d]."""
    rows, width, _ = qkv.shape
    d = w.head_dim
    q, k, v = qkv.split([w.heads * d, w.kv_heads * d, w.kv_heads * d], dim=-1)
    return (
        q.reshape(rows, width, w.heads, d).transpose(1, 2),
        k.reshape(rows, width, w.kv_heads, d).transpose(1, 2),
        v.reshape(rows, width, w.kv_heads, d).transpose(1, 2),
    )


def _rope(x: Any, cos: Any, sin: Any) -> Any:
    """Rotary embedding as transformers' Llama applies it (same operations, same rounding)."""
    import torch

    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos) + (rotated * sin)
