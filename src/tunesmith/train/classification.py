"""Classification training: the label head, class-weighted loss, accuracy and macro-F1 at each evaluation."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.data.prepare import PreparedData


def class_weights(train_labels: list[int], n_classes: int) -> list[float]:
    """Inverse-frequency weights, n / (k * count): a balanced set gets 1.0 everywhere."""
    counts = Counter(train_labels)
    total = len(train_labels)
    return [total / (n_classes * counts[c]) if counts[c] else 0.0 for c in range(n_classes)]


def classification_extras(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    """Trainer keyword arguments: metrics on argmax predictions (no logits kept) and the weighted loss."""
    assert data.labels is not None
    extras: dict[str, Any] = {
        "compute_metrics": _label_metrics,
        "preprocess_logits_for_metrics": lambda logits, labels: logits.argmax(dim=-1),
    }
    if cfg.train.class_weights == "auto":
        extras["compute_loss_func"] = _weighted_loss(class_weights(list(data.train["labels"]), len(data.labels)))
    return extras


def _weighted_loss(weights: list[float]) -> Any:
    import torch

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"]
        weight = torch.tensor(weights, dtype=logits.dtype, device=logits.device)
        return torch.nn.functional.cross_entropy(logits, labels, weight=weight)

    return loss


def _label_metrics(prediction: Any) -> dict[str, float]:
    from tunesmith.evaluate.label_metrics import label_scores

    predicted = [str(int(p)) for p in prediction.predictions]
    return label_scores(predicted, [str(int(g)) for g in prediction.label_ids])
