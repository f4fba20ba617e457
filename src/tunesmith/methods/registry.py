"""The method registry: a name -> how to prepare a model for that kind of fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.config import Task
from tunesmith.errors import TunesmithError

ApplyFn = Callable[[Any, Any, Task], Any]


@dataclass(frozen=True)
class MethodSpec:
    """One fine-tuning method."""

    name: str
    apply: ApplyFn
    packing: bool = True  # whether rows may be packed together (soft prompts prepend to each row)
    adapter: bool = False  # saves an adapter rather than full weights


METHODS: dict[str, MethodSpec] = {}


def register(name: str, *, packing: bool = True, adapter: bool = False) -> Callable[[ApplyFn], ApplyFn]:
    """Decorator: register ``apply(model, method_cfg, task) -> model`` under ``name``."""

    def decorate(fn: ApplyFn) -> ApplyFn:
        METHODS[name] = MethodSpec(name, fn, packing, adapter)
        return fn

    return decorate


def get_method(name: str) -> MethodSpec:
    """The registered method called ``name``."""
    if name not in METHODS:
        raise TunesmithError(f"method.name: unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
