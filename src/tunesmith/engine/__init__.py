"""The built-in inference engine shared by eval, generate, in-training metrics and serve.

A Llama-family causal LM (LoRA adapters included, several per batch) decodes here on the CPU: weights laid
out once for decoding (``weights``), a slot-per-row KV cache with batched prefill and decode steps
(``decoder``), and rows that join and leave between steps (``batch``). Anything else (other architectures,
DoRA and other adapter kinds, repetition penalties, GPUs) is refused with ``Unsupported`` and the caller
uses ``transformers`` ``generate`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.engine.batch import Batch, Sequence
from tunesmith.engine.decoder import Decoder
from tunesmith.engine.weights import Unsupported, Weights, extract

__all__ = [
    "Batch",
    "Engine",
    "Sequence",
    "Unsupported",
    "build_engine",
    "decode_dtype",
    "decode_sequences",
    "generate_tokens",
]


def decode_dtype(precision: str) -> Any:
    """bf16 for a bf16 run on a CPU with bf16 instructions (AVX512-BF16/AMX); fp32 otherwise."""
    import torch

    from tunesmith.models.precision import cpu_supports_bf16

    return torch.bfloat16 if precision == "bf16" and cpu_supports_bf16() else torch.float32


@dataclass
class Engine:
    """A model's decode weights; ``decoder()`` gives a fresh KV cache over them."""

    weights: Weights
    dtype: Any
    context: int | None

    def decoder(self) -> Decoder:
        """A decoder with an empty cache."""
        return Decoder(self.weights, self.dtype, self.context)

    def adapter_index(self, name: str | None) -> int:
        """The row index of peft adapter ``name`` (-1: the base model)."""
        return self.weights.adapters.index(name) if name in self.weights.adapters else -1


def build_engine(model: Any, precision: str, adapters: list[str] | None = None) -> Engine:
    """The engine for ``model`` as it would run now (or with each of ``adapters`` selectable per row).

    Raises ``Unsupported`` when the model is not one the engine runs.
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise Unsupported("the built-in engine decodes on the CPU")
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(causal, "config") or not hasattr(getattr(causal, "model", None), "layers"):
        raise Unsupported(f"a {type(causal).__name__}, not a transformers causal LM")
    if getattr(causal.config, "is_encoder_decoder", False):
        raise Unsupported("an encoder-decoder model")
    context = getattr(causal.config, "max_position_embeddings", None)
    dtype = decode_dtype(precision)
    weights = extract(model, dtype, adapters, int(context) if context else 4096)
    return Engine(weights, dtype, int(context) if context else None)


def generate_tokens(
    engine: Engine,
    prompts: list[list[int]],
    max_new_tokens: int,
    max_batch: int,
    eos: set[int],
    on_finished: Callable[[int], None] | None = None,
    **settings: Any,
) -> list[list[int]]:
    """Answer every prompt, ``max_batch`` rows at a time: a finished row's slot goes to the next prompt at once.

    ``settings``: Sequence fields shared by every prompt (adapter, sample, temperature, top_p, seed); the
    adapter defaults to the engine's first (the active one, for an engine built as the model runs now).
    ``on_finished``: told how many answers have just finished, as they do (for progress lines).
    """
    settings.setdefault("adapter", 0 if engine.weights.adapters else -1)
    sequences = [Sequence(p, max_new_tokens, **settings) for p in prompts]
    decode_sequences(engine, sequences, max_batch, eos, on_finished)
    return [s.tokens for s in sequences]


def decode_sequences(
    engine: Engine,
    sequences: list[Sequence],
    max_batch: int,
    eos: set[int],
    on_finished: Callable[[int], None] | None = None,
) -> None:
    """Decode each of ``sequences`` to its end, in place, ``max_batch`` rows at a time (continuous batching:
    a finished row leaves at once and the next waiting sequence joins at the next step)."""
    batch = Batch(engine.decoder(), eos)
    waiting = list(reversed(sequences))

    def leave_finished() -> None:
        finished = [s for s in batch.rows if s.finished]
        for sequence in finished:
            batch.leave(sequence)
        if finished and on_finished is not None:
            on_finished(len(finished))

    while waiting or batch.rows:
        joining = [waiting.pop() for _ in range(min(len(waiting), max_batch - len(batch.rows)))]
        batch.join(joining)
        leave_finished()
        if batch.rows:
            batch.step()
            leave_finished()
