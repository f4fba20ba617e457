"""Full fine-tuning: every weight is updated."""

from __future__ import annotations

from typing import Any

from tunesmith.config import FullMethod, Task
from tunesmith.methods.registry import register


@register(FullMethod, trainable=lambda settings, sizes: sizes.parameters())
def apply_full(model: Any, cfg: Any, task: Task) -> Any:
    """Leave every parameter trainable."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model
