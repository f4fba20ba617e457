"""Batches: padding-free packing for causal LM, padding to the longest row otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.config import Task
from tunesmith.data.single_turn import SINGLE_TURN
from tunesmith.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# Key of a packed batch that says how many of its tokens are shape padding (see ResponseOnlyPacking); the
# trainer removes it before the model call and leaves those tokens out of the tokens-seen count.
SHAPE_PADDING = "shape_padding"


def make_collator(
    tokenizer: PreTrainedTokenizerBase,
    packing: bool,
    task: Task = "causal_lm",
    model: Any = None,
    shape_multiple: int | None = None,
) -> Any:
    """The collator for training batches.

    Packing concatenates the rows of a batch into one sequence with position ids restarting at every row;
    transformers turns restarting positions into a block-diagonal attention mask, so no row sees another,
    and the first label of each row is masked so no loss crosses a boundary. No compute goes to padding,
    unless ``shape_multiple`` asks for packed lengths rounded up to a multiple (see ResponseOnlyPacking).
    """
    from transformers import DataCollatorWithFlattening

    spec = SINGLE_TURN[task]
    if packing and spec.token_loss:
        flatten = DataCollatorWithFlattening(
            return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=True
        )
        return ResponseOnlyPacking(flatten, getattr(tokenizer, "pad_token_id", None) or 0, shape_multiple)
    # Passing a seq2seq model lets the collator build decoder_input_ids from the labels.
    return RightPadding(tokenizer, model if spec.encoder_decoder else None)


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

    With ``shape_multiple``, the packed length and the number of kept positions are rounded up to a multiple
    of it: a padding row (its own positions, no loss) ends the sequence, and ignored positions are repeated in
    ``logits_to_keep``. On CPUs with bf16 instructions, PyTorch runs bf16 matmuls through oneDNN, which builds
    and caches a kernel for every new input shape; an epoch of packed batches brings hundreds of shapes, and
    with them growing memory and time spent building kernels. Rounding leaves a handful of shapes.
    """

    def __init__(self, flatten: Any, pad_id: int = 0, shape_multiple: int | None = None) -> None:
        self.flatten, self.pad_id, self.shape_multiple = flatten, pad_id, shape_multiple

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        padding = 0
        if self.shape_multiple:
            padding = -sum(len(f["input_ids"]) for f in features) % self.shape_multiple
            if padding:
                features = [*features, {"input_ids": [self.pad_id] * padding, "labels": [IGNORE_INDEX] * padding}]
        batch = self.flatten(features)
        targets = batch["labels"][:, 1:]
        keep = (targets[0] != IGNORE_INDEX).nonzero().squeeze(-1)
        if keep.numel() == 0:  # nothing to learn in this batch: one ignored position keeps shapes valid
            keep = keep.new_zeros(1)
        if self.shape_multiple:
            keep = _round_up_with_ignored(keep, targets[0], self.shape_multiple)
            batch[SHAPE_PADDING] = padding
        batch["logits_to_keep"] = keep
        # A leading ignored slot: the Trainer counts a causal LM's loss tokens as labels[..., 1:] (it expects
        # unshifted labels), so this keeps its token count, and the loss normalisation, exact.
        ignored = targets.new_full((1, 1), IGNORE_INDEX)
        batch["labels"] = torch.cat([ignored, targets[:, keep]], dim=1)
        return dict(batch)


def _round_up_with_ignored(keep: Any, targets: Any, multiple: int) -> Any:
    # Extra kept positions must carry no loss: repeat one whose target is ignored (a prompt's, a row start's).
    import torch

    missing = -keep.numel() % multiple
    ignored = (targets == IGNORE_INDEX).nonzero().squeeze(-1)
    if not missing or ignored.numel() == 0:
        return keep
    return torch.cat([keep, ignored[:1].expand(missing)])


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
