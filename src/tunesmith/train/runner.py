"""``tunesmith train``: setup -> train -> save -> cleanup, on the Hugging Face Trainer.

Everything that can fail because of user input (data, templates, model, lengths) is checked before the
run directory is created, so a bad config never leaves a half-made run behind. Once the run exists,
its run.json says what happened to it: running, completed, failed or interrupted.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith import IMPORTED_AT
from tunesmith.config import RunConfig, dump_config, load_config
from tunesmith.console import quiet_libraries, say
from tunesmith.data.forms import form_for, prepare_form_data, read_data
from tunesmith.data.prepare import DataStats, PreparedData, Tables
from tunesmith.errors import TunesmithError
from tunesmith.metric_specs import lower_is_better, score_keys, training_metrics

if TYPE_CHECKING:
    from tunesmith.train.callbacks import GracefulStopCallback
from tunesmith.rundir import RunRecord, Status, Stopwatch, atomic_write, environment_versions, new_run_dir, now_iso
from tunesmith.track.trackers import check_trackers, report_to, trackers_running
from tunesmith.train.distributed import global_batch, is_main_process, world_size


@dataclass
class RunResult:
    """What a finished training run produced."""

    run_dir: Path
    metrics: dict[str, float]
    tokens_per_second: float
    stats: DataStats
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Session:
    """Everything loaded for one run."""

    model: Any
    tokenizer: Any
    data: PreparedData
    resolved: Any
    precision: tuple[str, str]
    packing: bool
    adapter: bool


def train(
    cfg: RunConfig,
    output_dir: Path = Path("runs"),
    resume: Path | None = None,
    callbacks: list[Any] | None = None,
    parent: str | None = None,
    run_dir: Path | None = None,
    cli: bool = False,
) -> RunResult:
    """Fine-tune the model described by ``cfg``; write a run directory under ``output_dir``.

    With ``resume``, continue that run from its last checkpoint instead of starting a new one.
    ``callbacks`` are extra transformers ``TrainerCallback`` objects (a study reports each evaluation
    through one); ``parent`` names the study a trial belongs to and is saved in run.json. ``run_dir`` is
    a directory the multi-process launcher already made; every process gets it, only rank 0 writes to it.
    ``cli``: the process was started for this run, so its start-up time (imports) is part of the run's timings.
    """
    quiet_libraries()
    watch = Stopwatch()
    if cli:
        watch.timings["startup"] = round(time.perf_counter() - IMPORTED_AT, 3)
    check_selection(cfg)
    check_trackers(cfg.track)
    checkpoint = _check_resumable(resume) if resume is not None else None
    with watch.measure("data"):
        tables = _read_tables(cfg)
    session = _load(cfg, tables, watch)
    run_dir = resume or run_dir or new_run_dir(output_dir, cfg.name)
    record = _start_record(run_dir, cfg, session, resume is not None)
    if parent is not None:
        record.update(parent=parent)
    say(f"run: {run_dir}")
    from tunesmith.train.callbacks import GracefulStopCallback

    stop = GracefulStopCallback()
    try:
        with _signals_stop_gracefully(stop), trackers_running(cfg, run_dir, parent, main=record.writable) as attach:
            trainer, progress = _build_trainer(cfg, session, run_dir, stop)
            attach(trainer)
            for callback in callbacks or []:
                trainer.add_callback(callback)
            with watch.measure("train"):
                _train_from(trainer, checkpoint, cfg.train.max_steps)
            _split_evaluation_time(trainer, watch)
            _raise_evaluation_failure(trainer, run_dir)
            _raise_reward_failure(trainer, run_dir)
            if stop.requested:
                raise KeyboardInterrupt
            metrics = _evaluate_and_save(cfg, session, trainer, run_dir, watch)
            _raise_evaluation_failure(trainer, run_dir)
    except KeyboardInterrupt:
        record.set_status("interrupted", timings=watch.timings, hint=f"resume with --resume {run_dir}")
        _index(record)
        raise
    except BaseException as err:
        # After a requested stop, an error on the way out (a peer rank already gone from a collective) is part
        # of the interruption: the run stopped because it was asked to, and its checkpoint resumes it.
        status: Status = "interrupted" if stop.requested else "failed"
        resumable = last_complete_checkpoint(run_dir / "checkpoints") is not None
        hint = {"hint": f"resume with --resume {run_dir}"} if resumable else {}
        record.set_status(status, error=f"{type(err).__name__}: {err}", timings=watch.timings, **hint)
        _index(record)
        raise
    if record.writable:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    train_summary = {
        "steps": trainer.state.global_step,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "tokens_per_second": round(progress.tokens_per_second, 1),
    }
    with watch.measure("registry"):
        _index(record, model_card=True)
    record.set_status("completed", finished_at=now_iso(), timings=watch.timings, metrics=metrics, train=train_summary)
    return RunResult(run_dir, metrics, progress.tokens_per_second, session.data.stats, watch.timings)


def _split_evaluation_time(trainer: Any, watch: Stopwatch) -> None:
    # trainer.train() includes the periodic evaluations; report them as evaluation, not training.
    from tunesmith.train.callbacks import EvaluationClock
    from tunesmith.train.generation_metrics import GenerationMetricsCallback

    clocks = [
        c for c in trainer.callback_handler.callbacks if isinstance(c, EvaluationClock | GenerationMetricsCallback)
    ]
    seconds = round(sum(clock.seconds for clock in clocks), 3)
    if seconds:
        watch.timings["train"] = round(watch.timings["train"] - seconds, 3)
        watch.timings["evaluation"] = round(watch.timings.get("evaluation", 0.0) + seconds, 3)


def _raise_evaluation_failure(trainer: Any, run_dir: Path) -> None:
    # An in-training evaluation that raised has already had the Trainer save a checkpoint and stop (see
    # GenerationMetricsCallback); report it now, as one line that says how to continue.
    from tunesmith.train.generation_metrics import GenerationMetricsCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, GenerationMetricsCallback) and callback.failure is not None:
            step, err = callback.failure
            raise TunesmithError(
                f"eval.metrics: the evaluation at step {step} failed: {type(err).__name__}: {err}",
                hint=f"the steps trained so far are saved; fix the cause and continue with "
                f"tunesmith train CONFIG --resume {run_dir}",
            ) from err


def _raise_reward_failure(trainer: Any, run_dir: Path) -> None:
    # A GRPO code reward that raised stopped the run after its step, with a checkpoint (see RewardFailureStop).
    if trainer.__class__.__name__ == "TimedGRPOTrainer":
        from tunesmith.train.grpo import raise_reward_failure

        raise_reward_failure(trainer, run_dir)


def _index(record: RunRecord, model_card: bool = False) -> None:
    # The registry (runs/index.db) and the model card describe the run; neither may fail it.
    if not record.writable:
        return
    from tunesmith.track.model_card import write_model_card
    from tunesmith.track.registry import record_run

    if model_card:
        write_model_card(record.run_dir)
    record_run(record.run_dir)


# What the end-of-run line shows (the rest is in run.json).
SUMMARY_METRICS = (
    "eval_loss",
    "eval_perplexity",
    "eval_accuracy",
    "eval_macro_f1",
    "eval_bleu",
    "eval_rougeL",
    "eval_reward_accuracy",
    "eval_reward_margin",
)


def _read_tables(cfg: RunConfig) -> Tables:
    from tunesmith.train.objectives import objective_for

    if objective_for(cfg).needs_trl:
        from tunesmith.train.preference import require_trl

        require_trl(cfg.train.objective)
    return read_data(cfg)  # the data form's reader: every row checked before any model loads


def train_from_file(
    config_path: Path, overrides: list[str], output_dir: Path, resume: Path | None = None, run_dir: Path | None = None
) -> RunResult:
    """Load a config file (with ``--set`` overrides) and train it."""
    return train(load_config(config_path, overrides), output_dir, resume, run_dir=run_dir, cli=True)


def _load(cfg: RunConfig, tables: Tables, watch: Stopwatch | None = None) -> _Session:
    from transformers import set_seed

    from tunesmith.methods import apply_method, get_method, parameter_counts
    from tunesmith.models import head_kwargs, load_tokenizer, resolve_model
    from tunesmith.models.precision import resolve_precision
    from tunesmith.models.run_model import load_weights
    from tunesmith.train.distributed import check_engine

    watch = watch or Stopwatch()
    method = get_method(cfg.method.name)
    check_engine(cfg)
    precision = resolve_precision(cfg.train.precision)
    with watch.measure("model"):
        resolved = resolve_model(cfg.model.name, cfg.model.revision)
        tokenizer = load_tokenizer(resolved, cfg.model)
    with watch.measure("data"):
        data = prepare_form_data(cfg, tables, tokenizer)
    say(f"data: {data.stats.summary()}" + (" (tokenised cache)" if data.stats.cached else ""))
    set_seed(cfg.train.seed)
    with watch.measure("model"):
        model = load_weights(resolved, cfg.model, cfg.task, **head_kwargs(data.labels))
        model = apply_method(model, cfg.method, cfg.task)
        packing = prepare_for_training(cfg, model, method, precision[0])
    trainable, total = parameter_counts(model)
    say(
        f"model: {cfg.model.name} ({resolved.source}), method {cfg.method.name}: "
        f"{trainable:,} trainable / {total:,} parameters ({100 * trainable / total:.2f}%)"
    )
    say(f"precision: {precision[0]} ({precision[1]}); batches: {'packed, no padding' if packing else 'padded'}")
    say(batch_line(cfg))
    return _Session(model, tokenizer, data, resolved, precision, packing, method.adapter)


def batch_line(cfg: RunConfig) -> str:
    """The console's batch line: rows per optimizer step, or, where answers are sampled, prompts and answers."""
    from tunesmith.train.objectives import objective_for

    batch = global_batch(cfg)
    sampled = objective_for(cfg).generations
    unit = "answers" if sampled else "rows"
    line = (
        f"batch: {batch['per_device']}{' answers' if sampled else ''} per device x {batch['processes']} processes"
        f" x {batch['accumulation']} accumulation = {batch['global']} {unit} per optimizer step"
    )
    if sampled:
        per_prompt = sampled(cfg)
        line += f": {batch['global'] // per_prompt} prompts x {per_prompt} answers each"
    return line


def prepare_for_training(cfg: RunConfig, model: Any, method: Any, precision: str) -> bool:
    """What training does to a loaded model before its first step; returns whether batches are packed.

    The doctor times its steps after the same call, so its estimate is of the run that will happen.
    """
    from tunesmith.data.collate import supports_packing
    from tunesmith.models.attention import use_varlen_attention
    from tunesmith.models.precision import cast_frozen_weights

    if precision == "bf16" and method.adapter and method.packing:
        cast_frozen_weights(model)
    packing = cfg.train.packing and method.packing and form_for(cfg).token_loss and supports_packing(model)
    from tunesmith.train.objectives import objective_for

    packing = packing and objective_for(cfg).packs  # TRL's objectives pad their own batches
    if packing and cfg.model.attn_implementation is None:
        use_varlen_attention(model)
    return bool(packing)


def _start_record(run_dir: Path, cfg: RunConfig, session: _Session, resumed: bool) -> RunRecord:
    from tunesmith.methods import parameter_counts

    record = RunRecord(run_dir, writable=is_main_process())
    if record.writable:
        atomic_write(run_dir / "config.yaml", dump_config(cfg))
    trainable, total = parameter_counts(session.model)
    fields: dict[str, Any] = {
        "name": cfg.name,
        "task": cfg.task,
        "method": cfg.method.name,
        "objective": cfg.train.objective,
        "model": {
            "name": cfg.model.name,
            "source": session.resolved.source,
            "location": session.resolved.location,
        },
        "config_hash": cfg.config_hash(),
        "seed": cfg.train.seed,
        "precision": {"value": session.precision[0], "reason": session.precision[1]},
        "packing": session.packing,
        "batch": global_batch(cfg),
        "labels": session.data.labels,
        "parameters": {"trainable": trainable, "total": total},
        "versions": environment_versions(),
        "data": {"sha256": session.data.sha256, "stats": vars(session.data.stats)},
        "pid": os.getpid(),
    }
    if resumed:
        fields["resumed_at"] = [*record.data.get("resumed_at", []), now_iso()]
    else:
        fields["started_at"] = now_iso()
    record.update(**fields)
    record.set_status("running")
    return record


def _build_trainer(cfg: RunConfig, session: _Session, run_dir: Path, stop: GracefulStopCallback) -> tuple[Any, Any]:
    from transformers import EarlyStoppingCallback, PrinterCallback

    from tunesmith.train.callbacks import EvaluationClock, LiveStatusCallback, MetricsFileCallback, ProgressCallback
    from tunesmith.train.generation_metrics import GenerationMetricsCallback

    progress = ProgressCallback()
    metrics_file = MetricsFileCallback(run_dir / "metrics.jsonl")
    live = LiveStatusCallback(run_dir / "live.json")  # what the run does now, for the UI
    callbacks: list[Any] = [progress, metrics_file, stop, EvaluationClock(), live]
    if cfg.eval.metrics and form_for(cfg).generates and session.data.eval is not None:
        # Before early stopping, which reads the metrics this callback adds.
        data = session.data
        callbacks.append(
            GenerationMetricsCallback(cfg, session.tokenizer, data.eval_pairs, metrics_file, data.eval_conversations)
        )
        live.samples = callbacks[-1].size
    if cfg.train.early_stopping_patience and session.data.eval is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    from tunesmith.train.objectives import objective_for

    trainer = objective_for(cfg).build(cfg, session, _training_values(cfg, session, run_dir), callbacks)
    trainer.remove_callback(PrinterCallback)
    return trainer, progress


def _training_values(cfg: RunConfig, session: _Session, run_dir: Path) -> dict[str, Any]:
    # The TrainingArguments of a run, as keywords (TRL's configs extend them with their own).
    import torch

    from tunesmith.train.distributed import engine_arguments

    t = cfg.train
    has_eval = session.data.eval is not None
    early_stopping = bool(t.early_stopping_patience) and has_eval
    select_by = selection_metric(cfg)
    keep_best = has_eval and (early_stopping or select_by != "eval_loss")
    eval_steps = t.eval_steps or (t.save_steps if keep_best else None)
    eval_strategy = "no" if not has_eval else ("steps" if eval_steps else "epoch")
    return dict(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=cfg.eval.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=session.precision[0] == "bf16",
        fp16=session.precision[0] == "fp16",
        activation_checkpointing=t.gradient_checkpointing,
        torch_compile=t.torch_compile,
        logging_steps=t.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=(eval_steps or t.save_steps) if keep_best else t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=keep_best,
        metric_for_best_model=select_by if keep_best else None,
        greater_is_better=not lower_is_better(select_by) if keep_best else None,
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if world_size() > 1 and not torch.cuda.is_available() else None,
        ddp_find_unused_parameters=False,
        **engine_arguments(cfg),
        report_to=report_to(cfg.track),
        disable_tqdm=True,
        dataloader_num_workers=t.num_workers,
        remove_unused_columns=False,
        use_cache=False,  # packing relies on it: with a KV cache, transformers ignores packed position ids
        label_names=["labels"],
        include_num_input_tokens_seen="all" if session.packing else "non_padding",
        train_sampling_strategy="random" if session.packing else "group_by_length",
    )


def selection_metric(cfg: RunConfig) -> str:
    """The Trainer's name of the metric that picks the best checkpoint (train.select_by, eval_ prefixed)."""
    name = cfg.train.select_by
    return name if name.startswith("eval_") else f"eval_{name}"


def check_selection(cfg: RunConfig) -> None:
    """Fail before training when train.select_by or eval.metrics names something training cannot compute."""
    from tunesmith.evaluate.metrics import build_metrics

    during = training_metrics(form_for(cfg).label_head, cfg.eval.metrics)
    build_metrics(during)  # an unknown name is one line naming eval.metrics
    produced = {f"eval_{key}" for key in score_keys(during)}
    from tunesmith.train.objectives import objective_for

    produced |= {f"eval_{key}" for key in objective_for(cfg).eval_metrics(cfg)}
    name = selection_metric(cfg)
    if name not in produced | {"eval_loss"}:
        raise TunesmithError(
            f"train.select_by: {cfg.train.select_by!r} is not computed during training",
            hint=f"use eval_loss or one of {', '.join(sorted(k.removeprefix('eval_') for k in produced))}"
            if produced
            else "list it in eval.metrics, e.g. eval.metrics: [bleu]",
        )


def _evaluate_and_save(
    cfg: RunConfig, session: _Session, trainer: Any, run_dir: Path, watch: Stopwatch
) -> dict[str, float]:
    from tunesmith.train.objectives import objective_for

    metrics: dict[str, float] = {}
    if session.data.eval is not None:
        with watch.measure("evaluation"):
            scored = _evaluation_of_final_weights(trainer)
            if scored is None:
                scored = trainer.evaluate()
            metrics = {k: float(v) for k, v in scored.items() if isinstance(v, int | float)}
        if "eval_loss" in metrics and not form_for(cfg).label_head and objective_for(cfg).token_loss:
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
        shown = {k.removeprefix("eval_"): v for k, v in metrics.items() if k in SUMMARY_METRICS}
        from tunesmith.evaluate.report import score_text

        say("eval: " + ", ".join(f"{k} {score_text(v)}" for k, v in shown.items()))
    from tunesmith.models.attention import use_default_attention

    use_default_attention(trainer.model)
    with watch.measure("save"):
        _save(cfg, session, trainer, run_dir / "model")
    return metrics


def _evaluation_of_final_weights(trainer: Any) -> dict[str, float] | None:
    """The in-training evaluation of the weights training ended with, when there was one; else None.

    An epoch-end (or last-step) evaluation has already scored exactly the weights the run keeps, and with
    load_best_model_at_end the kept weights are the best checkpoint's, scored when it was saved. Scoring
    them again would double the evaluation time of every run for the same numbers.
    """
    from tunesmith.train.callbacks import EvaluationClock

    clock = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EvaluationClock)), None)
    if clock is None:
        return None
    step = trainer.state.global_step
    if trainer.args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        step = checkpoint_step(Path(trainer.state.best_model_checkpoint))
    return clock.by_step.get(step)


def _save(cfg: RunConfig, session: _Session, trainer: Any, model_dir: Path) -> None:
    trainer.save_model(str(model_dir))  # writes on the main process only
    if not is_main_process():
        return
    session.tokenizer.save_pretrained(str(model_dir))
    if cfg.export.merge and session.adapter:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(model_dir / "merged"))
        session.tokenizer.save_pretrained(str(model_dir / "merged"))


def _train_from(trainer: Any, checkpoint: str | None, max_steps: int | None) -> None:
    """Train, from ``checkpoint`` when resuming; a checkpoint already at train.max_steps is only restored.

    transformers checks max_steps after each step, so resuming from a checkpoint at max_steps (a run stopped
    right after its last save, or resumed with a lower max_steps) would train one step more than asked.
    """
    if checkpoint is None or max_steps is None or checkpoint_step(Path(checkpoint)) < max_steps:
        trainer.train(resume_from_checkpoint=checkpoint)
        return
    from transformers.trainer_callback import TrainerState

    say(f"resume: {Path(checkpoint).name} already reached train.max_steps={max_steps}; no step left to train")
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def _check_resumable(run_dir: Path) -> str | None:
    record = RunRecord(run_dir)
    if record.status is None:
        raise TunesmithError(f"--resume {run_dir}: not a tunesmith run directory (no run.json)")
    if record.status == "completed":
        raise TunesmithError(f"--resume {run_dir}: this run already completed")
    last = last_complete_checkpoint(run_dir / "checkpoints")
    if last is None:
        say(f"resume: no checkpoint in {run_dir} yet; starting from step 0")
        if is_main_process():
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None
    step = checkpoint_step(Path(last))
    if is_main_process():
        _trim_metrics(run_dir / "metrics.jsonl", step)
    say(f"resume: continuing {run_dir.name} from step {step}")
    return last


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint-N directory was saved at."""
    return int(path.name.rsplit("-", 1)[-1])


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that finished writing.

    A run killed while saving leaves a partial checkpoint-N behind. The Trainer writes trainer_state.json
    last, so a checkpoint whose trainer_state.json exists and parses is whole; older ones are the fallback.
    """
    import json

    candidates = sorted(checkpoints.glob("checkpoint-*"), key=checkpoint_step, reverse=True)
    for candidate in candidates if checkpoints.is_dir() else []:
        try:
            json.loads((candidate / "trainer_state.json").read_text())
        except (OSError, ValueError):
            say(f"resume: skipping {candidate.name}, it was not completely written")
            continue
        return str(candidate)
    return None


def _trim_metrics(path: Path, step: int) -> None:
    # Lines logged after the checkpoint are about to be replayed; keep the file free of duplicates.
    import json

    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    atomic_write(path, "".join(f"{line}\n" for line in kept))


@contextlib.contextmanager
def _signals_stop_gracefully(stop: GracefulStopCallback) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop.request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
