"""Training's eval_loss is the loss per target token over the eval set, the same for any eval batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from transformers import TrainerCallback

from fixtures import write_ads_csv
from tunesmith.config import load_config
from tunesmith.data.prepare import read_tables
from tunesmith.train.callbacks import GracefulStopCallback
from tunesmith.train.runner import _build_trainer, _load

# A few steps at a high rate, so rows differ in how well the model knows them (a random model finds every
# token about equally hard, which would hide a batch-weighted mean). Eval sets of 11 and 10 rows: not a multiple
# of the batch sizes 3 and 8, so the last batch is short.
TRAIN = {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-2, "precision": "fp32", "save_steps": 1000}
BATCH_SIZES = (1, 3, 8)


class _EvalLosses(TrainerCallback):
    """The eval_loss that callbacks (early stopping, the best-checkpoint choice) are handed."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float], **kwargs: Any) -> None:
        self.seen.append(metrics["eval_loss"])


def _config(path: Path, model: Path, task: str, data: dict[str, Any], train: dict[str, Any] | None = None) -> Path:
    config = {
        "name": "evalloss",
        "task": task,
        "model": {"name": str(model)},
        "data": data,
        "method": {"name": "full"},
        "train": TRAIN | (train or {}),
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _trained(config: Path, tmp_path: Path) -> tuple[Any, Any, _EvalLosses]:
    """The trainer tunesmith builds for ``config``, after training; and what its callbacks were handed."""
    cfg = load_config(config)
    session = _load(cfg, read_tables(cfg.data, cfg.task))
    trainer, _ = _build_trainer(cfg, session, tmp_path / "run", GracefulStopCallback())
    seen = _EvalLosses()
    trainer.add_callback(seen)
    trainer.train()
    return trainer, session, seen


def _eval_losses(trainer: Any, seen: _EvalLosses) -> tuple[list[float], list[float]]:
    """eval_loss at each eval batch size, as returned and as handed to callbacks."""
    start, returned = len(seen.seen), []
    for size in BATCH_SIZES:
        trainer.args.per_device_eval_batch_size = size
        returned.append(trainer.evaluate()["eval_loss"])
    return returned, seen.seen[start:]


def _direct_loss(model: Any, rows: Any, causal: bool) -> float:
    """Row by row, no batching: the model's own mean loss times its target count, summed, over all targets."""
    nll, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor([row["labels"]], device=model.device)
            targets = int((labels[:, 1:] if causal else labels).ne(-100).sum())
            ids = torch.tensor([row["input_ids"]], device=model.device)
            nll += float(model(input_ids=ids, labels=labels).loss) * targets
            count += targets
    return nll / count


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_causal_lm_eval_loss_is_per_target_token(tmp_path: Path, tiny_llama: Path, packing: bool) -> None:
    data = {
        "train": str(write_ads_csv(tmp_path / "ads.csv", repeat=6)),
        "prompt": "Write an ad for {product} aimed at {audience}.",
        "response": "{ad_text}",
        "eval_fraction": 0.23,
    }
    # Early stopping evaluates every 2 steps and keeps the best checkpoint, by the eval_loss callbacks are handed.
    train = {"packing": packing, "eval_steps": 2, "early_stopping_patience": 3}
    trainer, session, callbacks = _trained(_config(tmp_path / "c.yaml", tiny_llama, "causal_lm", data, train), tmp_path)
    assert session.packing is packing and len(session.data.eval) == 11
    during = callbacks.seen[:]
    assert len(during) == 3 and trainer.state.best_metric == min(during)
    assert [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e] == during
    returned, seen = _eval_losses(trainer, callbacks)
    assert returned == pytest.approx([_direct_loss(session.model, session.data.eval, causal=True)] * 3, rel=1e-5)
    assert seen == returned


def test_seq2seq_eval_loss_is_per_target_token(tmp_path: Path, tiny_t5: Path) -> None:
    rows = [
        (f"Customer {i} asked for a refund{' twice' * (i % 4)}.", f"refund {i}{' again' * (i % 3)}") for i in range(40)
    ]
    table = tmp_path / "tickets.csv"
    pd.DataFrame(rows, columns=["ticket", "summary"]).to_csv(table, index=False)
    data = {"train": str(table), "source": "summarize: {ticket}", "target": "{summary}", "eval_fraction": 0.25}
    trainer, session, callbacks = _trained(_config(tmp_path / "c.yaml", tiny_t5, "seq2seq", data), tmp_path)
    assert len(session.data.eval) == 10
    returned, seen = _eval_losses(trainer, callbacks)
    assert returned == pytest.approx([_direct_loss(session.model, session.data.eval, causal=False)] * 3, rel=1e-5)
    assert seen == returned


def test_classification_eval_loss_is_the_unweighted_mean_per_row(tmp_path: Path, tiny_bert: Path) -> None:
    reviews = [("Loved it, works perfectly", "positive"), ("Great value", "positive"), ("Terrible, broke", "negative")]
    table = tmp_path / "reviews.csv"
    pd.DataFrame(reviews * 12, columns=["review", "label"]).to_csv(table, index=False)
    data = {"train": str(table), "text": "{review}", "label": "label", "eval_fraction": 0.3}
    # Imbalanced labels with class weights: they weigh the training loss, not eval_loss.
    config = _config(tmp_path / "c.yaml", tiny_bert, "classification", data, {"class_weights": "auto"})
    trainer, session, callbacks = _trained(config, tmp_path)
    assert len(session.data.eval) == 11
    returned, seen = _eval_losses(trainer, callbacks)
    model = session.model.eval()
    with torch.no_grad():
        rows = [
            {k: torch.tensor([r[k]], device=model.device) for k in ("input_ids", "labels")} for r in session.data.eval
        ]
        direct = [float(model(**row).loss) for row in rows]
    assert returned == pytest.approx([sum(direct) / len(direct)] * 3, rel=1e-5)
    assert seen == returned
