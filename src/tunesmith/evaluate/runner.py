"""``tunesmith eval``: the base model and the tuned one on the same rows, same greedy decoding.

Life cycle: check everything that depends on user input (run, data, metric names) -> load the model ->
score the tuned model -> score the base (adapter switched off) -> write eval.json and samples.jsonl.
Nothing is written until every step has succeeded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from tunesmith.config import EvalConfig, RunConfig
from tunesmith.console import quiet_libraries, say
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.generation import Decoding, generate
from tunesmith.evaluate.kinds import eval_kind_for
from tunesmith.evaluate.loss import teacher_forced_loss
from tunesmith.evaluate.metrics import build_metrics
from tunesmith.evaluate.progress import Progress
from tunesmith.evaluate.references import EvalSet, build_eval_set, read_source
from tunesmith.evaluate.report import EvalReport, write_eval_outputs
from tunesmith.evaluate.scoring_model import inference_model, packs_rows
from tunesmith.metric_specs import default_metrics
from tunesmith.models.run_model import LoadedRun, base_model_view, load_run_model
from tunesmith.rundir import Stopwatch, read_run
from tunesmith.track.registry import record_run


@dataclass
class ModelScores:
    """One model's scores and its answer to every input."""

    metrics: dict[str, float]
    outputs: list[str]


def evaluate_run(
    run_dir: Path,
    data: Path | None = None,
    limit: int | None = None,
    base: bool = True,
    loss: bool = True,
    loss_references: str | None = None,
) -> EvalReport:
    """Evaluate a completed run on its eval split (or ``data``) and write eval.json + samples.jsonl into it.

    ``loss=False`` skips the teacher-forced loss over the references (generation metrics only).
    ``loss_references`` (first | all) overrides the run's ``eval.loss_references``: the loss over the first
    reference of each input (the default: it costs less than generating the answers) or over every reference.
    """
    if limit is not None and limit < 1:
        raise TunesmithError(f"--limit {limit}: must be at least 1 (how many inputs to evaluate)")
    choices = get_args(EvalConfig.model_fields["loss_references"].annotation)
    if loss_references is not None and loss_references not in choices:
        raise TunesmithError(f"--loss-references {loss_references!r}: choose {' or '.join(choices)}")
    quiet_libraries()
    config, record = read_run(run_dir)
    if loss_references is not None:
        config.eval.loss_references = loss_references  # checked against the choices above
    kind = eval_kind_for(config)  # a data form with its own eval (classification, conversations, GRPO prompts)
    if kind is not None:
        return kind(run_dir, data, limit, base, loss)
    pairs = None
    if config.train.objective != "sft":  # preference runs: chosen is the reference, pairs get scored
        from tunesmith.evaluate.preference import eval_pairs, generation_view, preference_scores

        pairs, config = eval_pairs(config, data)[:limit], generation_view(config)
    names = metric_names(config)
    source = read_source(config, data)
    if source.tables is not None and source.tables.sha256 != record.data.get("data", {}).get("sha256"):
        say("note: the run's data files changed since training; its eval split may not be the one it held out")
    watch = Stopwatch()
    with watch.measure("load"):
        run = load_run_model(run_dir)
        eval_set = build_eval_set(source, config, run.tokenizer, limit)
    decoding = Decoding(max_new_tokens=config.eval.max_new_tokens)
    say(f"eval: {eval_set.description['inputs']} inputs, {eval_set.description['pairs']} references")
    baseline = None
    if base:  # first, while the adapter is still separate from the base weights
        with base_model_view(run) as base_model:
            baseline = score_model(base_model, run, eval_set, names, decoding, watch, "base", loss)
            if pairs is not None:
                with watch.measure("base preference"):
                    baseline.metrics |= preference_scores(base_model, run, pairs)
    tuned = score_model(inference_model(run), run, eval_set, names, decoding, watch, "tuned", loss)
    if pairs is not None:
        with watch.measure("tuned preference"):
            tuned.metrics |= preference_scores(run.model, run, pairs)
    say("eval time: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in watch.timings.items()))
    report = EvalReport(
        run_dir=run_dir,
        data=eval_set.description,
        decoding=decoding.as_dict()
        | {"batch_size": config.eval.batch_size, "teacher_forced_loss": loss, "timings": watch.timings}
        | {"loss_references": config.eval.loss_references if loss else None},
        metric_names=names,
        examples=eval_set.examples,
        tuned=tuned.metrics,
        tuned_outputs=tuned.outputs,
        base=baseline.metrics if baseline else None,
        base_outputs=baseline.outputs if baseline else None,
    )
    write_eval_outputs(report)
    record_run(run_dir)  # eval metrics join the run's row in the registry
    return report


def metric_names(config: RunConfig) -> list[str]:
    """The run's metrics (eval.metrics, or the task's defaults), checked against the registry."""
    names = list(config.eval.metrics or default_metrics(config.task))
    build_metrics(names)  # unknown names fail here, before any model loads
    return names


def score_model(
    model: Any,
    run: LoadedRun,
    eval_set: EvalSet,
    names: list[str],
    decoding: Decoding,
    watch: Stopwatch | None = None,
    label: str = "tuned",
    loss: bool = True,
) -> ModelScores:
    """Generate an answer per input batch by batch, feeding each batch to the metrics, then the eval loss."""
    watch = watch or Stopwatch()
    metrics = build_metrics(names)
    batch_size = run.config.eval.batch_size
    examples = eval_set.examples
    outputs = [""] * len(examples)
    # Prompts of similar length share a batch, so padding wastes little compute. All prompts go at once: the
    # engine keeps batch_size rows decoding, a finished row's place going to the next prompt.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt))
    prompts = [examples[i].prompt for i in order]
    with watch.measure(f"{label} generation"):
        every = generate(
            model,
            run.tokenizer,
            run.config,
            prompts,
            decoding,
            batch_size,
            run.precision,
            Progress(f"eval {label} generation"),
        )
    answered = dict(zip(order, every, strict=True))
    for rows in even_batches(order, batch_size):
        answers = [answered[i] for i in rows]
        with watch.measure(f"{label} metrics"):
            for metric in metrics.values():
                metric.update(answers, [examples[i].references for i in rows])
        for i, text in zip(rows, answers, strict=True):
            outputs[i] = text
    scores = {key: value for metric in metrics.values() for key, value in metric.compute().items()}
    if loss:
        with watch.measure(f"{label} loss"):
            totals = teacher_forced_loss(
                model,
                run.tokenizer,
                eval_set.tokenized,
                batch_size,
                run.precision,
                packs_rows(run, model),
                Progress(f"eval {label} loss"),
            )
        scores |= totals.compute()
    return ModelScores(scores, outputs)


def even_batches(items: list[int], batch_size: int) -> list[list[int]]:
    """``items`` in order, cut into as few batches as ``batch_size`` allows, of sizes that differ by at most one.

    A batch costs about the same whether it is full or not (every decoding step reads every weight), so 105
    prompts at 32 run as 27 + 26 + 26 + 26 rather than 32 + 32 + 32 + 9.
    """
    count = -(-len(items) // batch_size)
    size, extra = divmod(len(items), count) if count else (0, 0)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]
