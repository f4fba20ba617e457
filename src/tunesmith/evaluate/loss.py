"""Teacher-forced eval loss and perplexity, batch by batch: only two running numbers outlive a batch.

The loss is per target token over the whole set (summed cross-entropy / token count), so it does not depend
on how the rows are batched. Training's eval_loss uses the same per-row sums (``train/eval_loss.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.evaluate.progress import Progress


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
    progress: Progress | None = None,
) -> LossTotals:
    """Loss of ``model`` on tokenised (prompt + reference) rows, masked as in training (response tokens only).

    ``packing`` (decoder-only models that take packed position ids, as in training): rows are scored as packed
    sequences in which the references of one prompt share its positions, with logits only where a target is
    read, so neither padding, repeated prompts nor prompt positions cost compute; the sums are the same as row
    by row. ``progress``: shown batch by batch.
    """
    if packing:
        return _packed_loss(model, examples, precision, progress)
    import torch

    from tunesmith.data.collate import make_collator
    from tunesmith.models.precision import autocast

    # Right padding (the training collator): left padding would shift Llama-style position ids.
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    collate = make_collator(tokenizer, packing=False, task="seq2seq" if encoder_decoder else "causal_lm")
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))  # similar lengths: little padding
    totals = LossTotals()
    if progress is not None:
        progress.begin(-(-len(ordered) // batch_size), "batches")
    for start in range(0, len(ordered), batch_size):
        batch = collate(ordered[start : start + batch_size]).to(model.device)
        with torch.inference_mode(), autocast(precision):
            logits = model(**batch).logits  # labels stay in: T5 builds its decoder inputs from them
        nll, tokens = row_losses(logits, batch["labels"], shift=not encoder_decoder)
        totals.add(float(nll.sum()), int(tokens.sum()))
        if progress is not None:
            progress.advance()
    return totals


# Tokens per packed sequence. A pack is attended under one mask, so its attention grows with the square of its
# length; about a thousand tokens amortise the per-call cost of the other layers (measured: 512 and 2048 are slower).
PACK_TOKENS = 1024


@dataclass
class _Pack:
    """Rows sharing a prompt, laid out as a tree: the shared prefix once, then each row's own continuation.

    ``keep`` are the positions whose logits predict a target (a shared position appears once per row that
    reads it) and ``targets`` those targets. ``blocks`` are (start, end, prefix start, prefix end): a block
    attends causally to itself and fully to its prefix (empty for the prefix block itself).
    """

    ids: list[int]
    positions: list[int]
    keep: list[int]
    targets: list[int]
    blocks: list[tuple[int, int, int, int]]

    @classmethod
    def empty(cls) -> _Pack:
        """A pack with nothing in it yet."""
        return cls([], [], [], [], [])

    def add_group(self, rows: list[dict[str, list[int]]]) -> None:
        """Append one prompt's rows: their common prefix once, then each row's continuation."""
        offset = len(self.ids)
        shared = _common_prefix([row["input_ids"] for row in rows])
        self.ids += rows[0]["input_ids"][:shared]
        self.positions += range(shared)
        self.blocks.append((offset, offset + shared, offset, offset))
        for row in rows:
            start = len(self.ids)
            tail = row["input_ids"][shared:]
            self.ids += tail
            self.positions += range(shared, shared + len(tail))
            self.blocks.append((start, start + len(tail), offset, offset + shared))
            for t, target in enumerate(row["labels"][1:], start=1):
                if target != IGNORE_INDEX:  # the logit at t - 1 predicts token t
                    self.keep.append(offset + t - 1 if t - 1 < shared else start + t - 1 - shared)
                    self.targets.append(target)

    def mask(self, dtype: Any) -> Any:
        """The [1, 1, T, T] additive attention mask of the tree layout: 0 where a position may attend, the
        dtype's lowest value elsewhere. Additive, not boolean: eager attention adds the mask it is given to the
        scores (a boolean one would add 1 and block nothing), and sdpa reads either form."""
        import torch

        size = len(self.ids)
        allowed = torch.zeros(size, size, dtype=torch.bool)
        for start, end, prefix_start, prefix_end in self.blocks:
            allowed[start:end, start:end] = torch.ones(end - start, end - start, dtype=torch.bool).tril()
            allowed[start:end, prefix_start:prefix_end] = True
        mask = torch.zeros(size, size, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        return mask[None, None]


def _common_prefix(sequences: list[list[int]]) -> int:
    length = min(len(s) for s in sequences)
    first = sequences[0]
    for i in range(length):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return length


def _prompt_groups(examples: list[dict[str, list[int]]]) -> list[list[dict[str, list[int]]]]:
    # Consecutive rows with the same prompt (the ids under the leading ignored labels) form a group: the eval set
    # lists every reference of an input one after another.
    groups: list[list[dict[str, list[int]]]] = []
    previous: list[int] | None = None
    for row in examples:
        prompt_length = next((i for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX), 0)
        prompt = row["input_ids"][:prompt_length]
        if groups and prompt_length and prompt == previous:
            groups[-1].append(row)
        else:
            groups.append([row])
        previous = prompt
    return groups


def _packs(examples: list[dict[str, list[int]]]) -> list[_Pack]:
    packs = [_Pack.empty()]
    for group in _prompt_groups(examples):
        if packs[-1].ids and len(packs[-1].ids) + sum(len(row["input_ids"]) for row in group) > PACK_TOKENS:
            packs.append(_Pack.empty())
        packs[-1].add_group(group)
    return [pack for pack in packs if pack.keep]


def _packed_loss(
    model: Any, examples: list[dict[str, list[int]]], precision: str, progress: Progress | None
) -> LossTotals:
    # Every reference of an input shares its prompt: the prompt runs once per pack, not once per reference
    # (8 references of a 70-token prompt and 25-token answers: 270 positions instead of 760), and logits are
    # projected only where a target is read. The sums equal row-by-row scoring up to float rounding.
    import torch

    from tunesmith.models.precision import autocast

    totals = LossTotals()
    packs = _packs(examples)
    if progress is not None:
        progress.begin(len(packs), "batches")  # a pack is one forward pass
    for pack in packs:
        inputs = {
            "input_ids": torch.tensor([pack.ids], device=model.device),
            "position_ids": torch.tensor([pack.positions], device=model.device),
            "attention_mask": pack.mask(model.dtype).to(model.device),
            "logits_to_keep": torch.tensor(pack.keep, device=model.device),
        }
        targets = torch.tensor([pack.targets])
        with torch.inference_mode(), autocast(precision):
            logits = model(**inputs, use_cache=False).logits
        totals.add(float(token_losses(logits, targets).sum()), int((targets != IGNORE_INDEX).sum()))
        if progress is not None:
            progress.advance()
    return totals
