"""A Llama-family model's weights, laid out for decoding: fused projections, LoRA adapters stacked per row.

Each layer keeps three fused projections and one plain one: q|k|v, gate|up, o and down. A LoRA adapter's A
matrices ride along as extra output rows of the fused weight (one matmul gives the base output and every
adapter's low-rank input), and its B matrices, scaled, sit side by side in one matrix; a per-row mask over the
rank columns picks each row's adapter (zeros for the base), so one batch mixes adapters with no per-row work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The projections of one decoder layer, by the group they are fused into.
GROUPS: dict[str, tuple[str, ...]] = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}
SUPPORTED_TYPES = ("llama",)


class Unsupported(Exception):
    """The model (or an adapter on it) is not one the built-in decoder runs; callers fall back to ``generate``."""


@dataclass
class Projection:
    """``y = x W^T`` for a fused group; with adapters, W carries their A rows and ``lora_b`` their scaled B."""

    weight: Any  # [out + groups * rank, in]
    out: int
    lora_b: Any | None  # [out, groups * rank]: block-diagonal over the group's members


@dataclass
class Layer:
    """One decoder layer's tensors."""

    input_norm: Any
    post_norm: Any
    qkv: Projection
    o: Projection
    gate_up: Projection
    down: Projection


@dataclass
class Weights:
    """Everything a decode step reads."""

    layers: list[Layer]
    embed: Any  # fp32, like the residual stream, norms and rotary tables: bf16 runs as bf16 autocast does
    final_norm: Any
    lm_head: Any  # matmul weights are in the decode dtype
    cos: Any  # [positions, head_dim]: the model's own rotary tables
    sin: Any
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    adapters: list[str]  # peft adapter names, in rank-column order
    rank: int  # columns per adapter (the largest adapter rank; smaller ones are zero-padded)

    @property
    def lora_width(self) -> int:
        """Rank columns of one projection: every adapter's rank block."""
        return self.rank * len(self.adapters)


def extract(model: Any, dtype: Any, adapters: list[str] | None, positions: int) -> Weights:
    """The decode layout of ``model`` (a causal LM, maybe a peft LoRA model) in ``dtype``.

    ``adapters``: the peft adapters rows may pick (None: whichever is active now; none when adapters are
    disabled or merged). Raises ``Unsupported`` for anything this layout cannot run exactly.
    """
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = causal.config
    _check_config(config)
    names = _adapter_names(model, adapters)
    rank = max((_rank(model, name) for name in names), default=0)
    inner = causal.model
    with torch.no_grad():
        layers = [_layer(layer, names, rank, dtype) for layer in inner.layers]
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        cos, sin = _rotary(inner, positions, head_dim)
        embed = _plain(inner.embed_tokens).float()
        return Weights(
            layers=layers,
            embed=embed,
            final_norm=inner.norm.weight.detach().float(),
            lm_head=_plain(causal.lm_head).to(dtype),
            cos=cos,
            sin=sin,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            eps=float(config.rms_norm_eps),
            adapters=names,
            rank=rank,
        )


def _check_config(config: Any) -> None:
    if getattr(config, "model_type", None) not in SUPPORTED_TYPES:
        raise Unsupported(f"model type {getattr(config, 'model_type', None)!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise Unsupported("biases")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise Unsupported(f"activation {config.hidden_act}")
    if getattr(config, "pretraining_tp", 1) != 1:
        raise Unsupported("tensor-parallel slicing")


def _adapter_names(model: Any, adapters: list[str] | None) -> list[str]:
    config = getattr(model, "peft_config", None)
    if not config:
        return []
    for name, adapter in config.items():
        kind = str(getattr(adapter, "peft_type", ""))
        if not kind.endswith("LORA") or getattr(adapter, "use_dora", False):
            raise Unsupported(f"adapter {name} ({kind})")
        if getattr(adapter, "rank_pattern", None) or getattr(adapter, "alpha_pattern", None):
            raise Unsupported(f"adapter {name}: per-module ranks")
        if getattr(adapter, "modules_to_save", None) or getattr(adapter, "lora_bias", False):
            raise Unsupported(f"adapter {name}: trained extra modules")
    if adapters is not None:
        return list(adapters)
    layer = _any_lora_layer(model)
    if layer is None or layer.disable_adapters or layer.merged:
        return []
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) > 1:
        raise Unsupported("several adapters active at once (their sum)")
    return active


def _any_lora_layer(model: Any) -> Any:
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            return module
    return None


def _rank(model: Any, name: str) -> int:
    return int(model.peft_config[name].r)


def _plain(module: Any) -> Any:
    """The weight of a linear or embedding, under a peft wrapper or not (refused if that wrapper trains it)."""
    if hasattr(module, "lora_A") and len(module.lora_A) and not module.merged:
        raise Unsupported("an adapter on the embeddings or the output head")
    base = getattr(module, "base_layer", module)
    return base.weight.detach()


def _layer(layer: Any, adapters: list[str], rank: int, dtype: Any) -> Layer:
    modules = dict(layer.named_modules())
    built = {
        group: _projection([modules[m] for m in members], adapters, rank, dtype) for group, members in GROUPS.items()
    }
    return Layer(
        input_norm=layer.input_layernorm.weight.detach().float(),
        post_norm=layer.post_attention_layernorm.weight.detach().float(),
        **built,
    )


def _projection(members: list[Any], adapters: list[str], rank: int, dtype: Any) -> Projection:
    import torch

    weights = [_base_weight(m) for m in members]
    out = sum(w.shape[0] for w in weights)
    if not adapters:
        return Projection(torch.cat(weights).to(dtype).contiguous(), out, None)
    a_rows, b_blocks = [], []
    for member, weight in zip(members, weights, strict=True):
        a, b = _lora_pair(member, adapters, rank, weight)
        a_rows.append(a)
        b_blocks.append(b)
    fused = torch.cat([*weights, *a_rows]).to(dtype).contiguous()
    return Projection(fused, out, torch.block_diag(*b_blocks).to(dtype).contiguous())


def _base_weight(module: Any) -> Any:
    base = getattr(module, "base_layer", module)
    if getattr(base, "bias", None) is not None:
        raise Unsupported("a projection with a bias")
    if hasattr(module, "lora_A") and module.merged and not module.disable_adapters:
        return base.weight.detach()  # the adapter is folded in already
    if hasattr(module, "lora_A") and module.merged:
        raise Unsupported("a merged adapter under disable_adapter")
    return base.weight.detach()


def _lora_pair(module: Any, adapters: list[str], rank: int, weight: Any) -> tuple[Any, Any]:
    """This member's A rows [adapters * rank, in] and scaled B columns [out, adapters * rank], zero-padded."""
    import torch

    out, width = weight.shape
    a = torch.zeros(len(adapters) * rank, width, dtype=torch.float32)
    b = torch.zeros(out, len(adapters) * rank, dtype=torch.float32)
    for index, name in enumerate(adapters):
        if not hasattr(module, "lora_A") or name not in module.lora_A:
            continue  # this adapter leaves the projection alone
        if module.merged:
            raise Unsupported("an adapter merged into the weights while others are served")
        lora_a, lora_b = module.lora_A[name].weight.detach(), module.lora_B[name].weight.detach()
        r = lora_a.shape[0]
        a[index * rank : index * rank + r] = lora_a.float()
        b[:, index * rank : index * rank + r] = lora_b.float() * float(module.scaling[name])
    return a, b


def _rotary(inner: Any, positions: int, head_dim: int) -> tuple[Any, Any]:
    """cos and sin for every position, from the model's own rotary module (its scaling rules included)."""
    import torch

    probe = torch.zeros(1, 1, head_dim, dtype=torch.float32)
    ids = torch.arange(positions).unsqueeze(0)
    cos, sin = inner.rotary_emb(probe, ids)
    return cos[0].float(), sin[0].float()
