"""Batches: padding-free packing for causal LM, padding to the longest row otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.config import Task
from tunesmith.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def make_collator(
    tokenizer: PreTrainedTokenizerBase, packing: bool, task: Task = "causal_lm", model: Any = None
) -> Any:
    """The collator for training batches.

    Packing concatenates the rows of a batch into one sequence with position ids restarting at every row;
    transformers turns restarting positions into a block-diagonal attention mask, so no row sees another,
    and the first label of each row is masked so no loss crosses a boundary. No compute goes to padding.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, DataCollatorWithPadding

    if task == "classification":
        tokenizer.padding_side = "right"
        return DataCollatorWithPadding(tokenizer)
    if task == "seq2seq":
        # Passing the model lets the collator build decoder_input_ids from the labels.
        return DataCollatorForSeq2Seq(tokenizer, model=model, padding="longest", label_pad_token_id=IGNORE_INDEX)
    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    tokenizer.padding_side = "right"
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)


def supports_packing(model: Any) -> bool:
    """Whether the model builds its attention mask from packed position ids (transformers' masking utils)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "_supports_attention_backend", False)) and not base.config.is_encoder_decoder
