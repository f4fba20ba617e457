"""Fine-tuning methods, one module per family, behind a registry (methods.registry.METHODS)."""

from typing import Any

from tunesmith.config import Task
from tunesmith.methods import adapters, freeze, full  # noqa: F401  (each module registers its methods)
from tunesmith.methods.registry import METHODS, MethodSpec, get_method, parameter_counts

__all__ = ["METHODS", "MethodSpec", "apply_method", "get_method", "parameter_counts"]


def apply_method(model: Any, cfg: Any, task: Task) -> Any:
    """Prepare ``model`` for the method named in ``cfg.name``."""
    return get_method(cfg.name).apply(model, cfg, task)
