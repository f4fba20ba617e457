"""Everything a run directory says about its run, read leniently: a missing file is an empty section."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class RunView:
    """The files of one run directory, parsed (config, run.json, metrics.jsonl, eval.json, samples.jsonl, live.json).

    ``live`` is what the training process last said it was doing (phase, step, evaluation progress); it is
    rewritten while the run trains and left as it was when the process ended.
    """

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The run id: its directory name."""
        return self.run_dir.name

    @property
    def task(self) -> str:
        """The run's task (causal_lm when the config does not say)."""
        return str(self.record.get("task") or self.config.get("task") or "causal_lm")

    def key_metrics(self) -> dict[str, float]:
        """Training metrics from run.json (and the last logged training loss), and the tuned (plain name) and
        base (``base.`` prefix) eval scores."""
        recorded = (self.record.get("metrics") or {}).items()
        metrics = {k: float(v) for k, v in recorded if _is_number(v) and not _bookkeeping(k)}
        losses = [row["loss"] for row in self.history if _is_number(row.get("loss"))]
        if losses and "loss" not in metrics:
            metrics["loss"] = float(losses[-1])  # the last logged training loss
        speed = (self.record.get("train") or {}).get("tokens_per_second")
        if isinstance(speed, int | float):
            metrics["tokens_per_second"] = float(speed)
        scores = (self.evaluation or {}).get("metrics") or {}
        metrics.update({k: float(v) for k, v in (scores.get("tuned") or {}).items() if _is_number(v)})
        metrics.update({f"base.{k}": float(v) for k, v in (scores.get("base") or {}).items() if _is_number(v)})
        return metrics


def load_run(run_dir: Path) -> RunView:
    """Read a run directory; unreadable or missing files leave their section empty."""
    view = RunView(run_dir)
    view.config = _read_yaml(run_dir / "config.yaml")
    view.record = _read_json(run_dir / "run.json") or {}
    if not view.record and (run_dir / "study.json").is_file():
        # A tune study: its directory holds study.json instead, and its trials are runs of their own.
        view.record = {"kind": "study", **(_read_json(run_dir / "study.json") or {})}
    view.history = _read_jsonl(run_dir / "metrics.jsonl")
    view.evaluation = _read_json(run_dir / "eval.json")
    view.samples = _read_jsonl(run_dir / "samples.jsonl")
    view.live = _read_json(run_dir / "live.json") or {}
    return view


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _bookkeeping(name: str) -> bool:
    # The Trainer's own counters (eval_runtime, eval_samples_per_second, epoch...) say nothing about the model.
    return name in ("epoch", "num_input_tokens_seen") or name.endswith(("_runtime", "_per_second"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash; the rest is still worth showing
        if isinstance(row, dict):
            rows.append(row)
    return rows
