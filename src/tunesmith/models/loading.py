"""Load a tokenizer and a model for a task from a resolved source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.config import ModelConfig, Task
from tunesmith.errors import TunesmithError
from tunesmith.models.resolve import ResolvedModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_tokenizer(resolved: ResolvedModel, cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """Load the tokenizer; models without a pad token pad with end-of-sequence."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, **_common_kwargs(resolved, cfg))
    except (OSError, ValueError) as err:
        raise TunesmithError(f"model.name {resolved.name!r}: cannot load its tokenizer: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(resolved: ResolvedModel, cfg: ModelConfig, task: Task, **model_kwargs: Any) -> PreTrainedModel:
    """Load weights in fp32 (the master copy; mixed precision is applied by autocast while training)."""
    import torch
    from transformers import AutoConfig

    if resolved.source == "run":
        from tunesmith.models.run_model import load_run_weights

        return load_run_weights(resolved, task, **model_kwargs)
    kwargs = _common_kwargs(resolved, cfg)
    try:
        model_config = AutoConfig.from_pretrained(resolved.location, **kwargs)
    except (OSError, ValueError) as err:
        raise TunesmithError(f"model.name {resolved.name!r}: cannot read its config: {err}") from err
    _check_architecture(resolved.name, model_config, task)
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    auto_class = _auto_class(task)
    try:
        return auto_class.from_pretrained(resolved.location, dtype=torch.float32, **kwargs, **model_kwargs)
    except (OSError, ValueError) as err:
        raise TunesmithError(f"model.name {resolved.name!r}: cannot load the weights: {err}") from err


def head_kwargs(labels: list[str] | None) -> dict[str, Any]:
    """from_pretrained arguments that size the classification head and save the label names with the model."""
    if labels is None:
        return {}
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def _common_kwargs(resolved: ResolvedModel, cfg: ModelConfig) -> dict[str, Any]:
    return {
        "revision": resolved.revision,
        "trust_remote_code": cfg.trust_remote_code,
        "local_files_only": resolved.local_files_only,
    }


def _auto_class(task: Task) -> Any:
    import transformers

    return {
        "causal_lm": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "classification": transformers.AutoModelForSequenceClassification,
    }[task]


def _check_architecture(name: str, model_config: Any, task: Task) -> None:
    encoder_decoder = bool(getattr(model_config, "is_encoder_decoder", False))
    if task == "causal_lm" and encoder_decoder:
        raise TunesmithError(
            f"model.name {name!r} is an encoder-decoder model ({model_config.model_type})",
            hint="use task: seq2seq for it",
        )
    if task == "seq2seq" and not encoder_decoder:
        raise TunesmithError(
            f"model.name {name!r} ({model_config.model_type}) is not an encoder-decoder model",
            hint="task: seq2seq needs one such as T5 or BART; use task: causal_lm for decoder-only models",
        )
