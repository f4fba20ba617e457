"""The facts about a run that the HTML report and the model card both show, as plain rows of text."""

from __future__ import annotations

from typing import Any

from tunesmith.track.runview import RunView

# Training settings worth a line in a summary; the full config is shown beside it.
TRAINING_KEYS = (
    "train.epochs",
    "train.max_steps",
    "train.learning_rate",
    "train.lr_scheduler",
    "train.batch_size",
    "train.grad_accum",
    "data.max_length",
)


def overview(view: RunView) -> list[tuple[str, str]]:
    """(label, value) rows: what was trained, how, on what, and how long it took."""
    record, config = view.record, view.config
    model = record.get("model") or {}
    method = config.get("method") or {}
    method_text = ", ".join(f"{k} {v}" for k, v in method.items() if k != "name")
    rows = [
        ("run", view.id),
        ("status", str(record.get("status", "unknown"))),
        ("task", view.task),
        ("base model", f"{model.get('name', '?')} ({model.get('source', '?')})" if model else "?"),
        ("method", f"{method.get('name', '?')}" + (f" ({method_text})" if method_text else "")),
    ]
    parameters = record.get("parameters") or {}
    if parameters.get("total"):
        share = 100 * parameters["trainable"] / parameters["total"]
        rows.append(("trainable parameters", f"{parameters['trainable']:,} of {parameters['total']:,} ({share:.2f}%)"))
    precision = record.get("precision") or {}
    if precision:
        rows.append(("precision", f"{precision.get('value')} ({precision.get('reason')})"))
    rows += [(key, str(value)) for key, value in _settings(config)]
    train = record.get("train") or {}
    if train:
        rows.append(("steps", f"{train.get('steps')} ({train.get('tokens_per_second')} tokens/s)"))
    timings = record.get("timings") or {}
    if timings:
        rows.append(("timings", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if isinstance(v, int | float))))
    rows.append(("config hash", str(record.get("config_hash", "?"))))
    return rows


def data_rows(view: RunView) -> list[tuple[str, str]]:
    """(label, value) rows: data files with their sha256 and the pipeline's counts."""
    data = view.record.get("data") or {}
    rows = [(f"file {path}", f"sha256 {digest[:16]}…") for path, digest in (data.get("sha256") or {}).items()]
    rows += [(key.replace("_", " "), str(value)) for key, value in (data.get("stats") or {}).items()]
    return rows


def metric_table(view: RunView) -> tuple[list[str], list[list[str]]]:
    """A metrics table (header, rows): base / tuned / delta from eval.json, else the training metrics."""
    scores = (view.evaluation or {}).get("metrics") or {}
    tuned, base = scores.get("tuned") or {}, scores.get("base") or {}
    if tuned:
        header = ["metric", *(["base"] if base else []), "tuned", *(["delta"] if base else [])]
        rows = []
        for name, value in tuned.items():
            if base:
                before = base.get(name)
                delta = _signed(value - before) if _numbers(value, before) else "-"
                rows.append([name, _number(before), _number(value), delta])
            else:
                rows.append([name, _number(value)])
        return header, rows
    metrics = view.record.get("metrics") or {}
    return ["metric", "value"], [[name, _number(value)] for name, value in metrics.items()]


def _settings(config: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for dotted in TRAINING_KEYS:
        section, key = dotted.split(".")
        value = (config.get(section) or {}).get(key)
        if value is not None:
            found.append((dotted, value))
    return found


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _number(value: Any) -> str:
    return f"{value:.4f}" if _numbers(value) else "-"


def _signed(value: float) -> str:
    return f"{value:+.4f}"
