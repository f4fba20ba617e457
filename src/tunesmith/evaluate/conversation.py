"""Per-turn eval of conversation runs: every assistant turn predicted from the conversation before it.

Each assistant turn of each eval conversation becomes one input: the messages before it, rendered exactly as in
training (``data/turns.py``'s renderer, tools and earlier calls and results included, the reference's own
earlier turns as context) up to the generation prompt. The base and the tuned model continue every input
through the same generation path as single-turn eval, and each answer is read back with ``parse_tool_calls``.

Scores: the ``tool_calls`` metric (call/no-call decisions, exact calls, argument F1, JSON validity) over every
turn; the text metrics (BLEU, chrF, ROUGE, exact match) over the turns whose reference calls no tool, on the
answer's text with any call blocks taken out. A turn whose input is longer than ``data.max_length`` is left out
and counted: training cut such conversations before that turn, so the model never learned to answer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.console import quiet_libraries, say
from tunesmith.data.chat_format import Message, assistant_text, parse_tool_calls
from tunesmith.data.conversation import Conversation
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.generation import Decoding, continue_texts
from tunesmith.evaluate.metrics import Metric, build_metrics
from tunesmith.evaluate.progress import Progress
from tunesmith.evaluate.references import EvalExample
from tunesmith.evaluate.report import EvalReport, write_eval_outputs
from tunesmith.metric_specs import default_metrics
from tunesmith.rundir import Stopwatch

# Scored on every assistant turn when eval.metrics names nothing, before the task's text metrics.
TURN_METRICS = ("tool_calls",)


@dataclass(frozen=True)
class Turn:
    """One assistant turn to predict: where it is, the text the model reads, and the reference message."""

    conversation: int  # 1-based row of the conversation in its file
    turn: int  # 0-based among the conversation's assistant turns
    prompt: str  # the conversation before the turn, rendered as in training, generation prompt included
    reference: Message  # the normalised assistant message (content, tool_calls)

    @property
    def calls(self) -> bool:
        """Whether the reference turn calls a tool."""
        return bool(self.reference.get("tool_calls"))


def conversation_metric_names(config: RunConfig) -> list[str]:
    """eval.metrics, or the tool-call metrics and the task's text metrics; unknown names fail here."""
    names = list(config.eval.metrics or (*TURN_METRICS, *default_metrics(config.task)))
    build_metrics(names)
    return names


def conversation_turns(conversations: list[Conversation], tokenizer: Any, config: RunConfig) -> tuple[list[Turn], int]:
    """Every assistant turn as a Turn, and how many were left out for an input over data.max_length."""
    from tunesmith.data.turns import conversation_renderer

    renderer = conversation_renderer(tokenizer, config.data)
    turns: list[Turn] = []
    for conversation in conversations:
        assistant = [i for i, m in enumerate(conversation.messages) if m["role"] == "assistant"]
        for number, index in enumerate(assistant):
            before = renderer.template_messages(conversation.messages[:index], conversation.tools)
            prompt = renderer.text(before, conversation.tools, generation_prompt=True)
            if prompt:  # an assistant turn that opens the conversation has nothing to be predicted from
                turns.append(Turn(conversation.row, number, prompt, conversation.messages[index]))
    if not turns:
        return [], 0
    lengths = [len(ids) for ids in tokenizer([t.prompt for t in turns], add_special_tokens=False)["input_ids"]]
    kept = [t for t, length in zip(turns, lengths, strict=True) if length <= config.data.max_length]
    return kept, len(turns) - len(kept)


def score_turns(
    model: Any,
    tokenizer: Any,
    turns: list[Turn],
    names: list[str],
    decoding: Decoding,
    batch_size: int,
    precision: str,
    progress: Progress | None = None,
) -> tuple[dict[str, float], list[str]]:
    """Generate every turn's answer (one call: the engine keeps ``batch_size`` rows decoding), then score them."""
    order = sorted(range(len(turns)), key=lambda i: len(turns[i].prompt))  # similar lengths share a batch
    prompts = [turns[i].prompt for i in order]
    answers = continue_texts(model, tokenizer, prompts, decoding, batch_size, precision, progress)
    outputs = [""] * len(turns)
    for i, text in zip(order, answers, strict=True):
        outputs[i] = text
    metrics = build_metrics(names)
    for metric in metrics.values():
        feed_turns(metric, turns, outputs)
    return {key: value for metric in metrics.values() for key, value in metric.compute().items()}, outputs


def feed_turns(metric: Metric, turns: list[Turn], outputs: list[str]) -> None:
    """A turn metric reads every turn with its reference message; a text metric the text turns, as text."""
    if getattr(metric, "every_turn", False):
        metric.update(outputs, [t.reference for t in turns])
        return
    text = [i for i, t in enumerate(turns) if not t.calls]
    metric.update(
        [parse_tool_calls(outputs[i]).content for i in text], [(turns[i].reference["content"],) for i in text]
    )


def evaluate_conversations(
    run_dir: Path, data: Path | None = None, limit: int | None = None, base: bool = True, loss: bool = True
) -> EvalReport:
    """Per-turn eval of a conversation run on its eval split (or ``data``): the first ``limit`` conversations,
    base then tuned, written to eval.json and samples.jsonl (one line per turn)."""
    from tunesmith.evaluate.loss import teacher_forced_loss
    from tunesmith.evaluate.scoring_model import inference_model, packs_rows
    from tunesmith.models.run_model import base_model_view, load_run_model
    from tunesmith.rundir import read_run
    from tunesmith.track.registry import record_run

    quiet_libraries()
    config, record = read_run(run_dir)
    names = conversation_metric_names(config)
    conversations, description = eval_conversations(config, record.data, data)
    conversations = conversations[:limit]
    watch = Stopwatch()
    with watch.measure("load"):
        run = load_run_model(run_dir)
        turns, skipped = conversation_turns(conversations, run.tokenizer, config)
    if not turns:
        raise _no_turns(config, description, skipped)
    decoding = Decoding(max_new_tokens=config.eval.max_new_tokens)
    description |= turn_counts(conversations, turns, skipped) | {"limit": limit}
    calling = description["calling_turns"]
    say(f"eval: {len(conversations)} conversations, {len(turns)} assistant turns ({calling} call a tool)")
    if skipped:
        say(f"note: {skipped} turns left out: their input is longer than data.max_length={config.data.max_length}")
    examples = None
    if loss:
        from tunesmith.data.turns import tokenize_conversations

        examples = tokenize_conversations(conversations, run.tokenizer, config.data)[0]

    def score(model: Any, label: str) -> tuple[dict[str, float], list[str]]:
        with watch.measure(f"{label} generation"):
            progress = Progress(f"eval {label} generation")
            scores, outputs = score_turns(
                model, run.tokenizer, turns, names, decoding, config.eval.batch_size, run.precision, progress
            )
        if examples:
            with watch.measure(f"{label} loss"):
                packed, progress = packs_rows(run, model), Progress(f"eval {label} loss")
                scores |= teacher_forced_loss(
                    model, run.tokenizer, examples, config.eval.batch_size, run.precision, packed, progress
                ).compute()
        return scores, outputs

    baseline = None
    if base:  # first, while the adapter is still separate from the base weights
        with base_model_view(run) as base_model:
            baseline = score(base_model, "base")
    tuned = score(inference_model(run), "tuned")
    say("eval time: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in watch.timings.items()))
    report = EvalReport(
        run_dir=run_dir,
        data=description,
        decoding=decoding.as_dict()
        | {"batch_size": config.eval.batch_size, "teacher_forced_loss": loss, "timings": watch.timings},
        metric_names=names,
        examples=[EvalExample(t.prompt, (assistant_text(t.reference),)) for t in turns],
        tuned=tuned[0],
        tuned_outputs=tuned[1],
        base=baseline[0] if baseline else None,
        base_outputs=baseline[1] if baseline else None,
        sample_fields=[{"conversation": t.conversation, "turn": t.turn, "reference": t.reference} for t in turns],
    )
    write_eval_outputs(report)
    record_run(run_dir)
    return report


def turn_counts(conversations: list[Conversation], turns: list[Turn], skipped: int) -> dict[str, int]:
    """What was scored, for eval.json: conversations, turns, calling and text turns, turns left out."""
    calling = sum(t.calls for t in turns)
    return {
        "conversations": len(conversations),
        "turns": len(turns),
        "calling_turns": calling,
        "text_turns": len(turns) - calling,
        "skipped_over_max_length": skipped,
    }


def eval_conversations(
    config: RunConfig, record: dict[str, Any], data: Path | None
) -> tuple[list[Conversation], dict[str, Any]]:
    """The conversations to evaluate, read and checked before any model loads: the run's eval split, re-made
    as training made it, or every row of ``data``."""
    from tunesmith.cache import file_sha256
    from tunesmith.data.conversation import read_conversations
    from tunesmith.data.conversation_data import conversations_of, read_conversation_tables
    from tunesmith.data.tables import read_table

    cfg = config.data
    assert cfg.messages is not None  # the conversation form is chosen by data.messages
    if data is not None:
        frame = read_table(data, "--data")
        rows = read_conversations(frame, cfg.messages, cfg.tools, data, cfg.system)
        return rows, {"source": "file", "path": str(data), "sha256": file_sha256(data)}
    if cfg.eval is None and cfg.eval_fraction == 0:
        raise TunesmithError(
            f"run {config.name!r} has no eval split (data.eval unset, data.eval_fraction 0)",
            hint="evaluate on a file with --data FILE",
        )
    tables = read_conversation_tables(cfg)
    if tables.sha256 != record.get("data", {}).get("sha256"):
        say("note: the run's data files changed since training; its eval split may not be the one it held out")
    path = cfg.eval if cfg.eval is not None else cfg.train
    held_out = conversations_of(cfg, tables)[1]
    return held_out, {"source": "eval_split", "path": str(path), "sha256": tables.sha256}


def _no_turns(config: RunConfig, description: dict[str, Any], skipped: int) -> TunesmithError:
    where = "--data " + str(description["path"]) if description["source"] == "file" else f"run {config.name!r}"
    if skipped:
        return TunesmithError(
            f"{where}: every assistant turn's input is longer than data.max_length={config.data.max_length}"
        )
    return TunesmithError(f"{where}: no assistant turn to evaluate (the eval split is empty)")
