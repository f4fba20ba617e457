"""Classification: batched predictions, `tunesmith predict`, and eval against a majority-class baseline.

An untrained classification head is random, so "base against tuned" would compare against noise; the
meaningful baseline is always answering the most frequent training label, and the report says so.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.console import say
from tunesmith.data.render import Pair
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.label_metrics import label_scores
from tunesmith.evaluate.references import EvalExample
from tunesmith.evaluate.report import EvalReport, write_eval_outputs
from tunesmith.metric_specs import task_metrics
from tunesmith.models.precision import autocast
from tunesmith.models.run_model import LoadedRun, load_run_model
from tunesmith.rundir import atomic_write, read_run


@dataclass
class Prediction:
    """The predicted label of one row and the model's probability for it."""

    label: str
    probability: float


def predict_texts(run: LoadedRun, texts: list[str], batch_size: int | None = None) -> list[Prediction]:
    """Predict a label per text in batches (right padding, softmax over the head's labels)."""
    import torch

    batch_size = batch_size or run.config.eval.batch_size
    id2label = run.model.config.id2label
    predictions: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        batch = run.tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            padding_side="right",
            truncation=True,
            max_length=run.config.data.max_length,
        )
        with torch.inference_mode(), autocast(run.precision):
            probabilities = run.model(**batch).logits.float().softmax(dim=-1)
        best, index = probabilities.max(dim=-1)
        predictions.extend(Prediction(id2label[int(i)], float(p)) for p, i in zip(best, index, strict=True))
    return predictions


def predict_file(run_dir: Path, input_file: Path, output: Path) -> int:
    """Write ``output`` (CSV): the input's columns plus predicted_label and probability. Returns the row count."""
    from tunesmith.data.tables import read_table
    from tunesmith.data.templates import check_columns, render

    config, _ = read_run(run_dir)
    _require_classification(config, "predict")
    assert config.data.text is not None
    frame = read_table(input_file, "--input")
    check_columns({"data.text": config.data.text}, frame.columns, input_file)
    rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]
    run = load_run_model(run_dir)
    predictions = predict_texts(run, [render(config.data.text, row) for row in rows])
    _write_predictions(output, rows, predictions)
    return len(rows)


def _write_predictions(output: Path, rows: list[dict[str, Any]], predictions: list[Prediction]) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*rows[0].keys(), "predicted_label", "probability"])
    writer.writeheader()
    for row, prediction in zip(rows, predictions, strict=True):
        writer.writerow(row | {"predicted_label": prediction.label, "probability": f"{prediction.probability:.4f}"})
    atomic_write(output, buffer.getvalue())


def evaluate_classification(run_dir: Path, data: Path | None, limit: int | None) -> EvalReport:
    """Accuracy, macro-F1, per-class report and confusion matrix; the majority class is the baseline."""
    config, record = read_run(run_dir)
    pairs = _labelled_rows(config, data)[:limit]
    run = load_run_model(run_dir)
    labels = [run.model.config.id2label[i] for i in sorted(run.model.config.id2label)]
    majority = _majority_label(record.data, labels)
    predicted = [p.label for p in predict_texts(run, [p.prompt for p in pairs])]
    gold = [p.response for p in pairs]
    unseen = sum(1 for g in gold if g not in labels)
    if unseen:
        say(f"eval: {unseen} rows have labels the model never saw in training; they count as errors")
    say(f"baseline: always answering the majority training label {majority!r} (an untrained head is random)")
    extra = _confusion(run_dir, labels, gold, predicted) | {
        "baseline": f"majority class {majority!r}",
        "unseen": unseen,
    }
    report = EvalReport(
        run_dir=run_dir,
        data={"rows": len(pairs), "source": str(data) if data else "eval_split"},
        decoding={"baseline": f"majority class {majority!r}"},
        metric_names=task_metrics("classification"),
        examples=[EvalExample(p.prompt, (p.response,)) for p in pairs],
        tuned=label_scores(predicted, gold),
        tuned_outputs=predicted,
        base=label_scores([majority] * len(gold), gold),
        base_outputs=[majority] * len(gold),
        extra=extra,
    )
    write_eval_outputs(report)
    from tunesmith.track.registry import record_run

    record_run(run_dir)
    return report


def _labelled_rows(config: RunConfig, data: Path | None) -> list[Pair]:
    from tunesmith.data.prepare import read_tables, task_templates
    from tunesmith.data.render import render_pairs
    from tunesmith.data.tables import read_table
    from tunesmith.data.templates import check_columns

    templates = task_templates(config.data, "classification")
    if data is not None:
        frame = read_table(data, "--data")
        check_columns(templates, frame.columns, data)
        pairs, _ = render_pairs(frame, *templates.values())
    else:
        pairs = _eval_split(config, read_tables(config.data, "classification"))
    if not pairs:
        raise TunesmithError(f"run {config.name!r}: no labelled rows to evaluate", hint="pass --data FILE")
    return pairs


def _eval_split(config: RunConfig, tables: Any) -> list[Pair]:
    from tunesmith.data.prepare import prepare_data
    from tunesmith.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(config.model.name, config.model.revision), config.model)
    return prepare_data(config.data, tables, tokenizer, "classification").eval_pairs


def _majority_label(record: dict[str, Any], labels: list[str]) -> str:
    counts = record.get("data", {}).get("stats", {}).get("label_counts") or {}
    return max(labels, key=lambda name: counts.get(name, 0))


def _confusion(run_dir: Path, labels: list[str], gold: list[str], predicted: list[str]) -> dict[str, Any]:
    from sklearn.metrics import classification_report, confusion_matrix

    names = labels + sorted({g for g in gold if g not in labels})
    matrix = confusion_matrix(gold, predicted, labels=names)
    per_class = classification_report(gold, predicted, labels=labels, output_dict=True, zero_division=0)
    _plot_confusion(run_dir / "confusion_matrix.png", names, matrix)
    return {"per_class": per_class, "confusion_matrix": {"labels": names, "rows_gold": matrix.tolist()}}


def _plot_confusion(path: Path, names: list[str], matrix: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.45 * len(names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _require_classification(config: RunConfig, command: str) -> None:
    if config.task != "classification":
        raise TunesmithError(f"tunesmith {command}: run is task {config.task}, not classification")
