"""The models a server answers with: each run, and each base a run was tuned from, by name.

LoRA runs of one base (same model, task and precision) share one copy of its weights: the first adapter is
loaded with ``PeftModel.from_pretrained``, the others with ``load_adapter``, and the base itself is the same
model with adapters off. Other adapter kinds (DoRA, (IA)^3, prompt or prefix tuning) cannot be mixed per row
by peft, so each gets its own model; full fine-tunes and bases no adapter run brings load as their own
models, after a check that their weights fit in free memory.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import DataConfig, RunConfig, Task
from tunesmith.data.forms import DataForm, form_for
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.models.resolve import ResolvedModel, resolve_model
from tunesmith.models.run_model import LoadedRun, load_run_model
from tunesmith.rundir import read_run
from tunesmith.serve.memory import check_fits

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass
class Engine:
    """One model in memory; the batcher runs one ``generate`` at a time on it."""

    label: str
    model: Any
    task: Task
    precision: str
    mixed: bool  # LoRA adapters only: one batch may give each row its own adapter (peft ``adapter_names``)
    context: int | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    fast: Any = None  # the built-in engine over this model (tunesmith.engine.Engine), or None: generate answers


@dataclass
class Route:
    """What one API ``model`` id answers with: an engine, the adapter to use on it, and how prompts render."""

    id: str
    engine: Engine
    adapter: str | None  # a peft adapter name, BASE for adapters off, None for a plain model
    tokenizer: Any
    data: DataConfig
    form: DataForm  # the data form it was tuned on (a base: its first run's): what it answers, how prompts render
    parent: str | None = None  # the base a run was tuned from
    run: LoadedRun | None = None  # classification runs: predict_texts takes a LoadedRun
    renderer: Any = field(default=None, repr=False)  # its conversation renderer, made on first use (serve.render)

    @property
    def task(self) -> Task:
        """causal_lm, seq2seq or classification."""
        return self.engine.task


@dataclass
class ModelPool:
    """Every route by its id, in the order they were loaded."""

    routes: dict[str, Route]

    def get(self, model_id: str) -> Route | None:
        """The route a request's ``model`` names, or None."""
        return self.routes.get(model_id)


BaseKey = tuple[str, str | None, str, str]


class _PoolBuilder:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.lora: dict[BaseKey, Engine] = {}
        self.bases: dict[BaseKey, tuple[RunConfig, Engine | None]] = {}

    def add_run(self, run_dir: Path) -> None:
        config, record = read_run(run_dir)
        model_dir = run_dir / "model"
        if not model_dir.is_dir():
            raise TunesmithError(f"{run_dir}: the run has no model/ directory")
        name = run_dir.resolve().name
        if name in self.routes:
            raise TunesmithError(f"{run_dir}: another run is already served as {name!r}", hint="serve each run once")
        precision = str(record.data.get("precision", {}).get("value", "fp32"))
        if form_for(config).label_head:
            self._add_classifier(run_dir, name, config, precision)
            return
        tokenizer = load_tokenizer(ResolvedModel(str(model_dir), str(model_dir), "local"), config.model)
        key: BaseKey = (config.model.name, config.model.revision, config.task, precision)
        if (model_dir / "adapter_config.json").is_file():
            engine, adapter = self._add_adapter(run_dir, config, key, precision)
        else:
            check_fits(f"run {run_dir}", model_dir)
            model = load_model(ResolvedModel(str(model_dir), str(model_dir), "local"), config.model, config.task)
            engine, adapter = _engine(name, model.eval(), config.task, precision, mixed=False), None
            self.bases.setdefault(key, (config, None))
        self.routes[name] = Route(name, engine, adapter, tokenizer, config.data, form_for(config), config.model.name)

    def _add_adapter(self, run_dir: Path, config: RunConfig, key: BaseKey, precision: str) -> tuple[Engine, str]:
        from peft import PeftModel

        adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
        # peft mixes adapters per row for plain LoRA only (not DoRA, not other methods).
        shareable = adapter_config.get("peft_type") == "LORA" and not adapter_config.get("use_dora")
        adapter = f"run{len(self.routes)}"  # peft names become module keys: no dots, so not the run name
        engine = self.lora.get(key) if shareable else None
        if engine is not None:
            engine.model.load_adapter(str(run_dir / "model"), adapter_name=adapter)
            engine.model.eval()
            return engine, adapter
        base = self._load_base(config, f"run {run_dir}")
        model = PeftModel.from_pretrained(base, str(run_dir / "model"), adapter_name=adapter).eval()
        engine = _engine(config.model.name, model, config.task, precision, mixed=shareable)
        if shareable:
            self.lora[key] = engine
        if self.bases.get(key, (None, None))[1] is None:
            self.bases[key] = (config, engine)
        return engine, adapter

    def _add_classifier(self, run_dir: Path, name: str, config: RunConfig, precision: str) -> None:
        # Each classification run has its own head; it loads as its own model and is not batched with others.
        if not (run_dir / "model" / "adapter_config.json").is_file():
            check_fits(f"run {run_dir}", run_dir / "model")
        else:
            _check_base_fits(config, f"run {run_dir}")
        run = load_run_model(run_dir)
        engine = _engine(name, run.model, config.task, precision, mixed=False)
        form = form_for(config)
        self.routes[name] = Route(name, engine, None, run.tokenizer, config.data, form, config.model.name, run=run)

    def _load_base(self, config: RunConfig, what: str) -> Any:
        resolved = _check_base_fits(config, what)
        return load_model(resolved, config.model, config.task)

    def add_bases(self) -> None:
        """A route per base model: adapters switched off where one is loaded, else the base on its own."""
        for (name, _, task, precision), (config, engine) in self.bases.items():
            if name in self.routes:
                continue  # the same base with another task or precision: the first one answers
            resolved = resolve_model(config.model.name, config.model.revision)
            if engine is None:
                _check_base_fits(config, f"base model {name!r}")
                model = load_model(resolved, config.model, config.task).eval()
                engine, adapter = _engine(name, model, task, precision, mixed=False), None  # type: ignore[arg-type]
            else:
                adapter = BASE
            tokenizer = load_tokenizer(resolved, config.model)
            data = config.data.model_copy(update={"system": None})  # the base was not tuned with the run's system
            self.routes[name] = Route(name, engine, adapter, tokenizer, data, form_for(config))


def load_pool(run_dirs: list[Path]) -> ModelPool:
    """Load every run (completed runs only) and the bases they were tuned from; one clear error otherwise."""
    from tunesmith.console import quiet_libraries

    if not run_dirs:
        raise TunesmithError("serve: give at least one RUN_DIR")
    quiet_libraries()
    builder = _PoolBuilder()
    for run_dir in run_dirs:
        builder.add_run(run_dir)
    builder.add_bases()
    pool = ModelPool(builder.routes)
    attach_engines(pool)
    return pool


def attach_engines(pool: ModelPool) -> None:
    """Give each generative model the built-in engine where it runs that model (every adapter selectable)."""
    from tunesmith.engine import Unsupported, build_engine

    seen: set[int] = set()
    for route in pool.routes.values():
        engine = route.engine
        if id(engine) in seen or not route.form.decoder_only:
            continue
        seen.add(id(engine))
        adapters = list(getattr(engine.model, "peft_config", {}) or {})
        try:
            engine.fast = build_engine(engine.model, engine.precision, adapters if adapters else None)
        except Unsupported:
            engine.fast = None  # transformers generate answers instead


def _check_base_fits(config: RunConfig, what: str) -> ResolvedModel:
    resolved = resolve_model(config.model.name, config.model.revision)
    if Path(resolved.location).is_dir():
        check_fits(f"{what} (base {config.model.name!r})", Path(resolved.location))
    return resolved


def _engine(label: str, model: Any, task: Task, precision: str, mixed: bool) -> Engine:
    context = getattr(model.config, "max_position_embeddings", None)
    return Engine(label, model, task, precision, mixed, int(context) if context else None)
