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
    model: Any, tokenizer: Any, examples: list[dict[str, list[int]]], batch_size: int, precision: str
) -> LossTotals:
    """Loss of ``model`` on tokenised (prompt + reference) rows, masked as in training (response tokens only)."""
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
