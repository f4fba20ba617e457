"""Preference accuracy for ``tunesmith eval``: does the model find the chosen answer likelier than the rejected one?

Each answer is scored by teacher forcing after its prompt, rendered as in training. Two accuracies:

- ``preference_accuracy``: the mean log-probability per answer token (length-normalised), so a longer answer is
  not penalised for its length alone; this is the headline number.
- ``preference_accuracy_sum``: the summed log-probability of the whole answer (what DPO's implicit reward uses).

``preference_margin`` is the mean gap (chosen minus rejected) of the per-token log-probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.console import say
from tunesmith.data.preference import PreferenceRow, preference_rows, read_preference_tables, render_preference_rows
from tunesmith.data.render import Pair
from tunesmith.data.tables import read_table
from tunesmith.data.templates import check_columns
from tunesmith.errors import TunesmithError


def generation_view(config: RunConfig) -> RunConfig:
    """The run's config as generation metrics read it: the chosen answer is the reference response."""
    view = config.model_copy(deep=True)
    if view.data.chosen:
        view.data.response = view.data.chosen
    return view


def eval_pairs(config: RunConfig, data: Path | None) -> list[PreferenceRow]:
    """The pairs to score, read and checked before any model loads: the ``--data`` file or the run's eval split."""
    cfg = config.data
    if data is not None:
        frame = read_table(data, "--data")
        templates = {"data.prompt": cfg.prompt, "data.chosen": cfg.chosen, "data.rejected": cfg.rejected}
        check_columns(templates, frame.columns, data)
        rows, _ = render_preference_rows(frame, cfg, data)
    else:
        _, rows, _ = preference_rows(cfg, read_preference_tables(cfg))
    pairs = [row for row in rows if row.paired]
    if not pairs:
        say("eval: no chosen/rejected pairs to score (KTO single answers); preference accuracy left out")
    return pairs


def preference_scores(model: Any, run: Any, pairs: list[PreferenceRow]) -> dict[str, float]:
    """Preference accuracy (per-token and summed log-probability) and margin of ``model`` on ``pairs``."""
    if not pairs:
        return {}
    chosen = answer_logps(model, run, [Pair(p.prompt, p.chosen) for p in pairs])
    rejected = answer_logps(model, run, [Pair(p.prompt, p.rejected) for p in pairs])
    kept = [(c, r) for c, r in zip(chosen, rejected, strict=True) if c is not None and r is not None]
    if not kept:
        raise TunesmithError(f"data.max_length: no eval answer fits in {run.config.data.max_length} tokens")
    per_token = [(c[0] / c[1], r[0] / r[1]) for c, r in kept]
    return {
        "preference_accuracy": sum(c > r for c, r in per_token) / len(kept),
        "preference_accuracy_sum": sum(c[0] > r[0] for c, r in kept) / len(kept),
        "preference_margin": sum(c - r for c, r in per_token) / len(kept),
    }


def answer_logps(model: Any, run: Any, pairs: list[Pair]) -> list[tuple[float, int] | None]:
    """(summed log-probability, token count) of each answer after its prompt; None when truncation left none."""
    import torch

    from tunesmith.data.collate import make_collator
    from tunesmith.data.tokenize import tokenize_pairs
    from tunesmith.evaluate.loss import row_losses
    from tunesmith.models.precision import autocast

    encoded = [tokenize_pairs([pair], run.tokenizer, run.config.data)[0] for pair in pairs]
    collate = make_collator(run.tokenizer, packing=False, task="causal_lm")
    scores: list[tuple[float, int] | None] = [None] * len(pairs)
    present = [i for i, rows in enumerate(encoded) if rows]
    size = run.config.eval.batch_size
    for start in range(0, len(present), size):
        index = present[start : start + size]
        batch = collate([encoded[i][0] for i in index]).to(model.device)
        with torch.inference_mode(), autocast(run.precision):
            logits = model(**batch).logits
        nll, tokens = row_losses(logits, batch["labels"], shift=True)
        for i, loss, count in zip(index, nll.tolist(), tokens.tolist(), strict=True):
            scores[i] = (-float(loss), int(count))
    return scores
