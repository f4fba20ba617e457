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
    from transformers import DataCollatorWithFlattening

    if packing and task == "causal_lm":
        flatten = DataCollatorWithFlattening(
            return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=True
        )
        return ResponseOnlyPacking(flatten)
    # Passing a seq2seq model lets the collator build decoder_input_ids from the labels.
    return RightPadding(tokenizer, model if task == "seq2seq" else None)


def supports_packing(model: Any) -> bool:
    """Whether the model builds its attention mask from packed position ids (transformers' masking utils)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "_supports_attention_backend", False)) and not base.config.is_encoder_decoder


class RightPadding:
    """Pads each batch to its longest row on the right, labels with IGNORE_INDEX.

    The side is passed on every call rather than read from the tokenizer: generation shares the tokenizer and
    pads on the left, and a collator that followed ``tokenizer.padding_side`` would change with it.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, seq2seq_model: Any = None) -> None:
        self.tokenizer = tokenizer
        self.seq2seq_model = seq2seq_model

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        """A BatchEncoding (``.to(device)`` moves it whole) of right-padded inputs and labels."""
        import torch

        labels = [f["labels"] for f in features] if "labels" in features[0] else None
        inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        batch = self.tokenizer.pad(inputs, padding="longest", padding_side="right", return_tensors="pt")
        if labels is None:
            return batch
        if isinstance(labels[0], list):  # token labels (causal LM, seq2seq); class ids are plain ints
            width = max(len(row) for row in labels)
            labels = [row + [IGNORE_INDEX] * (width - len(row)) for row in labels]
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        if self.seq2seq_model is not None:
            batch["decoder_input_ids"] = self.seq2seq_model.prepare_decoder_input_ids_from_labels(
                labels=batch["labels"]
            )
        return batch


class ResponseOnlyPacking:
    """Packed batches that also say which positions need logits: those that predict a loss-carrying token.

    The vocabulary projection is the largest single matmul of a small LM (SmolLM2: 49k x 576), and with
    loss on responses only, roughly half the positions never feed the loss. ``logits_to_keep`` makes the
    model project just the positions that do; ``labels`` become their targets, already shifted, and
    ``packed_response_loss`` scores them. The loss is the same as on full logits; the work is not.
    """

    def __init__(self, flatten: Any) -> None:
        self.flatten = flatten

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.flatten(features)
        targets = batch["labels"][:, 1:]
        keep = (targets[0] != IGNORE_INDEX).nonzero().squeeze(-1)
        if keep.numel() == 0:  # nothing to learn in this batch: one ignored position keeps shapes valid
            keep = keep.new_zeros(1)
        batch["logits_to_keep"] = keep
        # A leading ignored slot: the Trainer counts a causal LM's loss tokens as labels[..., 1:] (it expects
        # unshifted labels), so this keeps its token count, and the loss normalisation, exact.
        ignored = targets.new_full((1, 1), IGNORE_INDEX)
        batch["labels"] = torch.cat([ignored, targets[:, keep]], dim=1)
        return dict(batch)


def packed_response_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Summed cross-entropy of the kept positions over the loss tokens of the (accumulated) batch."""
    import torch

    logits = outputs["logits"].float()
    labels = labels[:, 1:].to(logits.device)  # drop the leading ignored slot (see ResponseOnlyPacking)
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else (labels != IGNORE_INDEX).sum()
    return total / torch.clamp(torch.as_tensor(count, device=logits.device), min=1)
