"""Load the model a completed run produced: base + adapter, or the full weights, in the run's precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import ModelConfig, RunConfig, Task
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import head_kwargs, load_model, load_tokenizer
from tunesmith.models.resolve import ResolvedModel, resolve_model
from tunesmith.rundir import read_run


@dataclass
class LoadedRun:
    """A completed run's config and its model, ready to generate."""

    run_dir: Path
    config: RunConfig
    model: Any
    tokenizer: Any
    adapter: bool
    precision: str


def load_run_model(run_dir: Path) -> LoadedRun:
    """Load the tuned model of a completed run (base + adapter, or the full weights)."""
    from tunesmith.console import quiet_libraries

    quiet_libraries()
    config, record = read_run(run_dir)
    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise TunesmithError(f"{run_dir}: the run has no model/ directory")
    saved = ResolvedModel(str(model_dir), str(model_dir), "local")
    tokenizer = load_tokenizer(saved, config.model)
    adapter = (model_dir / "adapter_config.json").is_file()
    if adapter:
        from peft import PeftModel

        labels = head_kwargs(record.data.get("labels"))
        base = load_weights(
            resolve_model(config.model.name, config.model.revision), config.model, config.task, **labels
        )
        model: Any = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = load_model(saved, config.model, config.task)
    model.eval()
    precision = str(record.data.get("precision", {}).get("value", "fp32"))
    return LoadedRun(run_dir, config, model, tokenizer, adapter, precision)


def load_weights(resolved: ResolvedModel, cfg: ModelConfig, task: Task, **model_kwargs: Any) -> Any:
    """The weights ``model.name`` resolved to: a pre-trained model, or (a run directory) that run's tuned model."""
    if resolved.source == "run":
        return load_run_weights(resolved, task, **model_kwargs)
    return load_model(resolved, cfg, task, **model_kwargs)


def load_run_weights(resolved: ResolvedModel, task: str, **model_kwargs: Any) -> Any:
    """A completed run's tuned model as plain weights (``model.name`` set to a run directory).

    An adapter is merged into its base in memory, so the next method starts from the tuned model as if it
    were a pre-trained one; a full fine-tune's weights load as they are.
    """
    run_dir = Path(resolved.location).parent
    run = load_run_model(run_dir)
    if run.config.task != task:
        raise TunesmithError(f"model.name {resolved.name!r}: that run's task is {run.config.task}, not {task}")
    model = run.model.merge_and_unload() if run.adapter else run.model
    return model.train()


def load_base_model(run: LoadedRun) -> Any:
    """The untouched pre-trained model of a run (for full fine-tunes; adapters just switch off)."""
    cfg = run.config
    resolved = resolve_model(cfg.model.name, cfg.model.revision)
    return load_weights(resolved, cfg.model, cfg.task, **_saved_head(run)).eval()


@contextlib.contextmanager
def base_model_view(run: LoadedRun) -> Iterator[Any]:
    """The base model: the same object with its adapter switched off, or a fresh load for full fine-tunes."""
    if run.adapter:
        with run.model.disable_adapter():
            yield run.model
    else:
        yield load_base_model(run)


def _saved_head(run: LoadedRun) -> dict[str, Any]:
    # A base for a classification run needs the same head shape as the tuned one (its weights stay untrained).
    labels = getattr(run.model.config, "id2label", None) if run.config.task == "classification" else None
    return head_kwargs([labels[i] for i in sorted(labels)]) if labels else {}
