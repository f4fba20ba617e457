"""Layer freezing: train the model except the embeddings, the first N blocks, named modules or the encoder."""

from __future__ import annotations

import re
from typing import Any

from tunesmith.config import FreezeMethod, Task
from tunesmith.errors import TunesmithError
from tunesmith.methods.registry import ModelSizes, register

# Matches the block index in parameter names: model.layers.3., encoder.block.0., transformer.h.11., layer.2.
_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|block|blocks)\.(\d+)\.")


@register(FreezeMethod, trainable=lambda settings, sizes: freeze_trainable(settings, sizes))
def apply_freeze(model: Any, cfg: FreezeMethod, task: Task) -> Any:
    """Freeze what the config names; fail when that leaves nothing to train."""
    pattern = _compile(cfg.regex)
    frozen = _embedding_parameters(model) if cfg.embeddings else set()
    if cfg.encoder:
        frozen |= _encoder_parameters(model)
    for name, parameter in model.named_parameters():
        if id(parameter) in frozen or _matches(name, cfg, pattern):
            parameter.requires_grad_(False)
        else:
            parameter.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise TunesmithError("method: freeze leaves no trainable parameters", hint="freeze fewer layers or modules")
    return model


def _matches(name: str, cfg: FreezeMethod, pattern: re.Pattern[str] | None) -> bool:
    block = _BLOCK_INDEX.search(name)
    if block is not None and int(block.group(1)) < cfg.layers:
        return True
    if any(fragment in name for fragment in cfg.modules):
        return True
    return pattern is not None and pattern.search(name) is not None


def _compile(regex: str | None) -> re.Pattern[str] | None:
    if regex is None:
        return None
    try:
        return re.compile(regex)
    except re.error as err:
        raise TunesmithError(f"method.regex: invalid regular expression {regex!r}: {err}") from err


def _embedding_parameters(model: Any) -> set[int]:
    embeddings = model.get_input_embeddings()
    return {id(p) for p in embeddings.parameters()} if embeddings is not None else set()


def _encoder_parameters(model: Any) -> set[int]:
    if not getattr(model.config, "is_encoder_decoder", False):
        raise TunesmithError(
            "method.encoder: this model has no separate encoder", hint="use it with task: seq2seq models"
        )
    return {id(p) for p in model.get_encoder().parameters()}


def freeze_trainable(settings: FreezeMethod, sizes: ModelSizes) -> int:
    """Parameters left trainable: all but the frozen blocks and, when frozen, the embeddings."""
    total = sizes.parameters()
    embeddings = sizes.vocab * sizes.hidden
    per_layer = (total - embeddings * (1 if sizes.tied else 2)) // max(sizes.layers, 1)
    frozen = min(settings.layers, sizes.layers) * per_layer
    return max(total - frozen - (embeddings if settings.embeddings else 0), 0)
