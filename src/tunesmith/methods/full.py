"""Full fine-tuning: every weight is updated."""

from __future__ import annotations

from typing import Any

from tunesmith.config import Task
from tunesmith.methods.registry import register


@register("full")
def apply_full(model: Any, cfg: Any, task: Task) -> Any:
    """Leave every parameter trainable."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model
