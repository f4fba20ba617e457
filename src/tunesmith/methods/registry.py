"""The method registry: one registration per method carries its settings class, how to apply it, and its traits.

``register(LoraMethod, adapter=True, trainable=...)`` is all a new method needs besides its settings class in
``tunesmith.config``; training, the doctor and the search's memory estimate read everything from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tunesmith.config import MethodSettings, Task
from tunesmith.errors import TunesmithError

ApplyFn = Callable[[Any, Any, Task], Any]


class ModelSizes(Protocol):
    """The sizes a trainable-parameter estimate reads (``tune.memory.ModelShape`` has them)."""

    @property
    def vocab(self) -> int: ...
    @property
    def hidden(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def tied(self) -> bool: ...

    def parameters(self) -> int:
        """Total parameters."""
        ...

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each per-layer linear module, by its usual name."""
        ...


TrainableFn = Callable[[Any, ModelSizes], int]


def few_vectors(settings: Any, sizes: ModelSizes) -> int:
    """The estimate for methods that train vectors or a few virtual tokens per layer: small next to the rest."""
    return sizes.layers * sizes.hidden * 64


@dataclass(frozen=True)
class MethodSpec:
    """One fine-tuning method."""

    name: str
    settings: type[MethodSettings]  # its section of the config (method.*)
    apply: ApplyFn
    packing: bool = True  # whether rows may be packed together (soft prompts prepend to each row)
    adapter: bool = False  # saves an adapter rather than full weights
    trainable: TrainableFn = few_vectors  # parameters it trains, estimated from the model's sizes (memory)


METHODS: dict[str, MethodSpec] = {}


def register(
    settings: type[MethodSettings], *, packing: bool = True, adapter: bool = False, trainable: TrainableFn = few_vectors
) -> Callable[[ApplyFn], ApplyFn]:
    """Decorator: register ``apply(model, method_cfg, task) -> model`` for the method ``settings`` configures."""
    name = str(settings.model_fields["name"].default)

    def decorate(fn: ApplyFn) -> ApplyFn:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = MethodSpec(name, settings, fn, packing, adapter, trainable)
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
