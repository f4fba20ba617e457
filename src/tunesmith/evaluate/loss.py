"""Teacher-forced eval loss and perplexity, batch by batch: only two running numbers outlive a batch."""

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

    def add(self, mean_loss: float, tokens: int) -> None:
        """Add one batch: its mean loss per target token and how many target tokens it had."""
        self.nll += mean_loss * tokens
        self.tokens += tokens

    def compute(self) -> dict[str, float]:
        """Loss per target token over every batch, and its perplexity (exp of the loss, capped to stay finite)."""
        if not self.tokens:
            return {}
        loss = self.nll / self.tokens
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def teacher_forced_loss(
    model: Any, tokenizer: Any, examples: list[dict[str, list[int]]], batch_size: int, precision: str
) -> LossTotals:
    """Loss of ``model`` on tokenised (prompt + reference) rows, masked as in training (response tokens only)."""
    import torch

    from tunesmith.data.collate import make_collator
    from tunesmith.evaluate.generation import autocast

    # Right padding (the training collator): left padding would shift Llama-style position ids.
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    collate = make_collator(tokenizer, packing=False, task="seq2seq" if encoder_decoder else "causal_lm")
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))  # similar lengths: little padding
    totals = LossTotals()
    for start in range(0, len(ordered), batch_size):
        batch = collate(ordered[start : start + batch_size]).to(model.device)
        with torch.inference_mode(), autocast(precision):
            loss = model(**batch).loss
        totals.add(float(loss), target_tokens(batch["labels"], encoder_decoder))
    return totals


def target_tokens(labels: Any, encoder_decoder: bool) -> int:
    """How many tokens the model's mean loss averaged over (causal models predict label t from t-1)."""
    targets = labels if encoder_decoder else labels[:, 1:]
    return int((targets != IGNORE_INDEX).sum())
