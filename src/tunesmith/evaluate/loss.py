"""Teacher-forced eval loss and perplexity, batch by batch: only two running numbers outlive a batch.

The loss is per target token over the whole set (summed cross-entropy / token count), so it does not depend
on how the rows are batched. Training's eval_loss uses the same per-row sums (``train/eval_loss.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tunesmith.data.tokenize import IGNORE_INDEX


@dataclass
class LossTotals:
    """Summed negative log-likelihood over the target tokens seen so far, and their count."""

    nll: float = 0.0
    tokens: int = 0

    def add(self, nll: float, tokens: int) -> None:
        """Add one batch: its summed loss over its target tokens and how many target tokens it had."""
        self.nll += nll
        self.tokens += tokens

    def compute(self) -> dict[str, float]:
        """Loss per target token over every batch, and its perplexity (exp of the loss, capped to stay finite)."""
        if not self.tokens:
            return {}
        loss = self.nll / self.tokens
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def token_losses(logits: Any, targets: Any) -> Any:
    """Cross-entropy of each target in fp32, shaped like ``targets``; 0 where the target is ignored."""
    import torch

    flat = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return flat.view(targets.shape)


def row_losses(logits: Any, labels: Any, shift: bool) -> tuple[Any, Any]:
    """Each row's summed cross-entropy over its target tokens, and how many target tokens it has.

    ``shift``: a causal LM's logit at position t predicts label t + 1, as in the model's own loss. Encoder-decoder
    logits line up with their labels; a classifier's row has one label, so it counts as one token.
    """
    if shift:
        # Prompt tuning prepends virtual positions to each row; their logits predict nothing.
        logits = logits[:, -labels.shape[1] :]
        logits, labels = logits[:, :-1], labels[:, 1:]
    rows = len(labels)
    nll = token_losses(logits, labels).reshape(rows, -1).sum(-1)
    return nll, (labels != IGNORE_INDEX).reshape(rows, -1).sum(-1)


def teacher_forced_loss(
    model: Any,
    tokenizer: Any,
    examples: list[dict[str, list[int]]],
    batch_size: int,
    precision: str,
    packing: bool = False,
) -> LossTotals:
    """Loss of ``model`` on tokenised (prompt + reference) rows, masked as in training (response tokens only).

    ``packing`` (decoder-only models that take packed position ids, as in training): rows are scored as packed
    sequences with logits only where a target is read, so padding and prompt positions cost no vocabulary
    projection; the sums are the same as row by row.
    """
    if packing:
        return _packed_loss(model, tokenizer, examples, batch_size, precision)
    import torch

    from tunesmith.data.collate import make_collator
    from tunesmith.models.precision import autocast

    # Right padding (the training collator): left padding would shift Llama-style position ids.
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    collate = make_collator(tokenizer, packing=False, task="seq2seq" if encoder_decoder else "causal_lm")
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))  # similar lengths: little padding
    totals = LossTotals()
    for start in range(0, len(ordered), batch_size):
        batch = collate(ordered[start : start + batch_size]).to(model.device)
        with torch.inference_mode(), autocast(precision):
            logits = model(**batch).logits  # labels stay in: T5 builds its decoder inputs from them
        nll, tokens = row_losses(logits, batch["labels"], shift=not encoder_decoder)
        totals.add(float(nll.sum()), int(tokens.sum()))
    return totals


# Rows per packed sequence: attention runs per row (models/attention.py), so a pack costs what its rows cost;
# larger packs only amortise the per-call overhead of the other layers.
ROWS_PER_PACK = 32


def _packed_loss(
    model: Any, tokenizer: Any, examples: list[dict[str, list[int]]], batch_size: int, precision: str
) -> LossTotals:
    import torch

    from tunesmith.data.collate import make_collator
    from tunesmith.models.attention import use_varlen_attention
    from tunesmith.models.precision import autocast

    use_varlen_attention(model)  # plain sdpa when there are no row boundaries, so generation is unchanged
    collate = make_collator(tokenizer, packing=True)
    totals = LossTotals()
    rows = max(batch_size, ROWS_PER_PACK)
    for start in range(0, len(examples), rows):
        batch = collate(examples[start : start + rows])
        targets = batch.pop("labels")[:, 1:]  # past the collator's leading ignored slot: one per kept logit
        inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in batch.items()}
        with torch.inference_mode(), autocast(precision):
            logits = model(**inputs, use_cache=False).logits
        totals.add(float(token_losses(logits, targets).sum()), int((targets != IGNORE_INDEX).sum()))
    return totals
