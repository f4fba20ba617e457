"""Parameter-efficient methods through peft: LoRA, DoRA, (IA)^3, prompt tuning, prefix tuning."""

from __future__ import annotations

from typing import Any

from tunesmith.config import DoraMethod, IA3Method, LoraMethod, PrefixTuningMethod, PromptTuningMethod, Task
from tunesmith.errors import TunesmithError
from tunesmith.methods.registry import ModelSizes, register


def _task_type(task: Task) -> Any:
    from peft import TaskType

    return {"causal_lm": TaskType.CAUSAL_LM, "seq2seq": TaskType.SEQ_2_SEQ_LM, "classification": TaskType.SEQ_CLS}[task]


def _wrap(model: Any, peft_config: Any) -> Any:
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config)
    except ValueError as err:
        raise TunesmithError(f"method: peft cannot apply {peft_config.peft_type.value}: {err}") from err


@register(LoraMethod, adapter=True, trainable=lambda settings, sizes: lora_trainable(settings, sizes))
def apply_lora(model: Any, cfg: LoraMethod, task: Task) -> Any:
    """Low-rank adapters on the target modules (classification heads stay fully trainable)."""

    return _wrap(model, _lora_config(cfg, task, use_dora=False))


@register(DoraMethod, adapter=True, trainable=lambda settings, sizes: lora_trainable(settings, sizes))
def apply_dora(model: Any, cfg: LoraMethod, task: Task) -> Any:
    """LoRA with weight decomposition (magnitude and direction trained apart)."""
    return _wrap(model, _lora_config(cfg, task, use_dora=True))


def lora_trainable(settings: LoraMethod, sizes: ModelSizes) -> int:
    """Rank-r A and B matrices on every targeted linear module of every block."""
    shapes = sizes.linear_shapes()
    targets = settings.target_modules
    if targets != "all-linear" and any(t in shapes for t in targets):
        shapes = {name: shape for name, shape in shapes.items() if name in targets}
    return sizes.layers * sum(settings.r * (i + o) for i, o in shapes.values())


def _lora_config(cfg: LoraMethod, task: Task, use_dora: bool) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type=_task_type(task),
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        use_dora=use_dora,
    )


@register(IA3Method, adapter=True)
def apply_ia3(model: Any, cfg: IA3Method, task: Task) -> Any:
    """(IA)^3 scaling vectors."""
    from peft import IA3Config

    return _wrap(
        model,
        IA3Config(
            task_type=_task_type(task),
            target_modules=cfg.target_modules,
            feedforward_modules=cfg.feedforward_modules,
        ),
    )


@register(PromptTuningMethod, packing=False, adapter=True)
def apply_prompt_tuning(model: Any, cfg: PromptTuningMethod, task: Task) -> Any:
    """A learned soft prompt prepended to every row."""
    from peft import PromptTuningConfig, PromptTuningInit

    init = PromptTuningInit.TEXT if cfg.init_text else PromptTuningInit.RANDOM
    extra = (
        {"prompt_tuning_init_text": cfg.init_text, "tokenizer_name_or_path": model.name_or_path}
        if cfg.init_text
        else {}
    )
    return _wrap(
        model,
        PromptTuningConfig(
            task_type=_task_type(task), num_virtual_tokens=cfg.num_virtual_tokens, prompt_tuning_init=init, **extra
        ),
    )


@register(PrefixTuningMethod, packing=False, adapter=True)
def apply_prefix_tuning(model: Any, cfg: PrefixTuningMethod, task: Task) -> Any:
    """Learned key/value prefixes in every attention layer."""
    from peft import PrefixTuningConfig

    return _wrap(model, PrefixTuningConfig(task_type=_task_type(task), num_virtual_tokens=cfg.num_virtual_tokens))
