"""Will a trial fit? A peak-memory estimate from the model's config.json, before any weight is loaded.

peak = weights + gradients (trainable parameters) + AdamW state (two moments per trainable parameter)
     + activations (batch x length x hidden x layers x bytes per unit) + logits and their gradient + runtime.
The activation factor follows Korthikanti et al. (2022): about 34 bytes per hidden unit per token per layer
in 16-bit, twice that in fp32. It is an estimate meant to catch the trials that cannot possibly fit, not
to predict the last megabyte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config import RunConfig

GIB = 1024**3
ACTIVATION_BYTES_16BIT = 34
RUNTIME_BYTES = 600 * 1024**2  # torch, transformers and the Ray worker themselves
GATED_MLP = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "granite", "smollm3")
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The sizes that decide memory, read from config.json."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    tied: bool
    gated: bool

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each per-layer linear module, by its usual name."""
        h, f, kv = self.hidden, self.intermediate, self.hidden * self.kv_heads // max(self.heads, 1)
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h)}
        shapes |= {"gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}
        return shapes if self.gated else {k: v for k, v in shapes.items() if k != "gate_proj"}

    def parameters(self) -> int:
        """Total parameters (norms and biases left out: they are noise at this scale)."""
        per_layer = sum(i * o for i, o in self.linear_shapes().values())
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * per_layer


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one trial, by part."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        """The estimated peak."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.runtime

    def describe(self) -> str:
        """One line for trials.csv and the console."""
        return f"{self.total / GIB:.2f} GiB (activations {self.activations / GIB:.2f} GiB)"


def model_shape(location: str, revision: str | None = None) -> ModelShape:
    """Read a model's sizes from its config.json (a local directory or a cached hub id); no weights load."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location, revision=revision)
    text = getattr(config, "text_config", None) or config
    return shape_from_config(text.to_dict())


def shape_from_config(config: dict[str, Any]) -> ModelShape:
    """ModelShape from a config.json mapping, whatever the architecture calls its sizes."""

    def first(*names: str, default: int = 0) -> int:
        return int(next((config[n] for n in names if config.get(n) is not None), default))

    hidden = first("hidden_size", "d_model", "n_embd", "dim")
    heads = first("num_attention_heads", "num_heads", "n_head", default=1)
    layers = first("num_hidden_layers", "num_layers", "n_layer") + first("num_decoder_layers")
    return ModelShape(
        vocab=first("vocab_size"),
        hidden=hidden,
        layers=layers,
        intermediate=first("intermediate_size", "d_ff", "n_inner", "ffn_dim", default=4 * hidden),
        heads=heads,
        kv_heads=first("num_key_value_heads", default=heads),
        tied=bool(config.get("tie_word_embeddings", True)),
        gated=config.get("model_type") in GATED_MLP,
    )


def estimate_memory(cfg: RunConfig, shape: ModelShape) -> MemoryEstimate:
    """Peak memory of training ``cfg`` on a model of ``shape``."""
    total = shape.parameters()
    trainable = trainable_parameters(cfg, shape)
    low_precision = cfg.train.precision in ("bf16", "fp16", "auto")
    per_unit = ACTIVATION_BYTES_16BIT * (1 if low_precision else 2)
    tokens = cfg.train.batch_size * cfg.data.max_length
    if cfg.train.gradient_checkpointing:
        # Only each block's input is kept; one block's activations exist at a time during recomputation.
        layer_activations = tokens * shape.hidden * (4 * shape.layers + per_unit)
    else:
        layer_activations = tokens * shape.hidden * shape.layers * per_unit
    logits = tokens * shape.vocab * 4 * 2  # fp32 logits and their gradient
    return MemoryEstimate(
        weights=total * 4,  # the Trainer keeps fp32 master weights, also under autocast
        gradients=trainable * 4,
        optimizer=trainable * 8,
        activations=layer_activations + logits,
    )


def trainable_parameters(cfg: RunConfig, shape: ModelShape) -> int:
    """How many parameters the method trains (each method's registration says how to estimate it)."""
    from tunesmith.methods import get_method

    return get_method(cfg.method.name).trainable(cfg.method, shape)


def available_memory(gpu: float = 0.0) -> int:
    """Bytes a trial may use on this machine: free GPU memory when trials get a GPU, else free RAM."""
    if gpu > 0:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return int(free * min(gpu, 1.0))
    import psutil

    return int(psutil.virtual_memory().available)
