"""The supervised objective (sft): the Hugging Face Trainer on tokenised rows, packed where the model allows."""

from __future__ import annotations

from typing import Any

from tunesmith.config import RunConfig

# Packed lengths rounded up to this many tokens where bf16 matmuls run through oneDNN (see ResponseOnlyPacking):
# at most 63 padding tokens a batch, against a new kernel for nearly every batch of an epoch.
SHAPE_MULTIPLE = 64


def build_supervised_trainer(cfg: RunConfig, session: Any, values: dict[str, Any], callbacks: list[Any]) -> Any:
    """A TokenLossTrainer on the session's model and data; ``values`` are the run's TrainingArguments values."""
    from transformers import TrainingArguments

    from tunesmith.data.collate import make_collator
    from tunesmith.train.trainer import TokenLossTrainer

    if cfg.train.gradient_checkpointing and session.adapter:
        session.model.enable_input_require_grads()  # checkpointed blocks need a grad-carrying input
    return TokenLossTrainer(  # eval_loss per target token, the same for any eval batching
        model=session.model,
        args=TrainingArguments(**values),
        train_dataset=session.data.train,
        eval_dataset=session.data.eval,
        data_collator=_drop_length(
            make_collator(session.tokenizer, session.packing, cfg.task, session.model, shape_multiple(session))
        ),
        processing_class=session.tokenizer,
        callbacks=callbacks,
        **_loss_arguments(cfg, session),
    )


def shape_multiple(session: Any) -> int | None:
    """SHAPE_MULTIPLE for bf16 training on a CPU, where PyTorch builds a oneDNN kernel per matmul shape; else None."""
    import torch

    return SHAPE_MULTIPLE if session.precision[0] == "bf16" and not torch.cuda.is_available() else None


def _loss_arguments(cfg: RunConfig, session: Any) -> dict[str, Any]:
    from tunesmith.data.collate import packed_response_loss
    from tunesmith.data.forms import form_for
    from tunesmith.train.classification import classification_extras

    if form_for(cfg).label_head:
        return classification_extras(cfg, session.data)
    if session.packing:
        return {"compute_loss_func": packed_response_loss}
    return {}


def _drop_length(collator: Any) -> Any:
    # The "length" column feeds the length-grouped sampler; the model must not receive it.
    def collate(features: list[dict[str, Any]]) -> Any:
        return collator([{k: v for k, v in f.items() if k != "length"} for f in features])

    return collate
