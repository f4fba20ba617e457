"""The ``tunesmith`` command: parse arguments, call one library function, print. No logic here."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from tunesmith.console import err_console, out_console
from tunesmith.errors import TunesmithError

app = typer.Typer(
    help="Fine-tune pre-trained language models on your own data from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="The run config (YAML).", show_default=False)]
RunDirArg = Annotated[Path, typer.Argument(help="A run directory made by tunesmith train.", show_default=False)]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: --set train.learning_rate=1e-4.")
]
OutputDirOpt = Annotated[Path, typer.Option("--output-dir", help="Where run directories are created.")]


@app.command()
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    output_dir: OutputDirOpt = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this interrupted run from its last checkpoint.")
    ] = None,
) -> None:
    """Fine-tune the model the config describes and write a run directory."""
    from tunesmith.train.runner import train_from_file

    result = train_from_file(config, set_ or [], output_dir, resume)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k in ("eval_loss", "eval_perplexity"))
    out_console.print(f"completed: {result.run_dir}")
    out_console.print(f"throughput: {result.tokens_per_second:.0f} tokens/s" + (f"; {metrics}" if metrics else ""))


@app.command()
def generate(
    run_dir: RunDirArg,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="A prompt (repeatable).")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="A table whose rows are rendered with the run's prompt template."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write JSONL here instead of printing.")] = None,
    compare_base: Annotated[bool, typer.Option("--compare-base", help="Also answer with the base model.")] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest answer in tokens.")] = 96,
    sample: Annotated[bool, typer.Option("--sample", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option(min=0.01, help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling mass.")] = 0.9,
    repetition_penalty: Annotated[float, typer.Option(min=1.0, help="Penalty on repeated tokens.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
) -> None:
    """Answer prompts with a run's tuned model (and, with --compare-base, the base model beside it)."""
    from tunesmith.evaluate.generation import Decoding, answer

    decoding = Decoding(max_new_tokens, sample, temperature, top_p, repetition_penalty, seed)
    prompts, tuned, base = answer(run_dir, prompt, input_file, decoding, compare_base)
    if output is not None:
        _write_jsonl(output, prompts, tuned, base)
        out_console.print(f"wrote {len(prompts)} answers to {output}")
    else:
        _print_answers(prompts, tuned, base)


def _write_jsonl(path: Path, prompts: list[str], tuned: list[str], base: list[str] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for i, prompt in enumerate(prompts):
            row = {"input": prompt, "output": tuned[i]} | ({"base_output": base[i]} if base else {})
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _print_answers(prompts: list[str], tuned: list[str], base: list[str] | None) -> None:
    from rich.table import Table

    for i, prompt in enumerate(prompts):
        table = Table(title=f"prompt {i + 1}: {prompt}", title_justify="left", show_lines=True, expand=True)
        if base is not None:
            table.add_column("base model", ratio=1)
        table.add_column("tuned model", ratio=1)
        table.add_row(*([base[i]] if base is not None else []), tuned[i])
        out_console.print(table)


@app.command("eval")
def eval_(
    run_dir: RunDirArg,
    data: Annotated[
        Path | None, typer.Option("--data", help="Evaluate on this table (rendered with the run's templates).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N inputs.")] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Score only the tuned model, not the base.")] = False,
) -> None:
    """Score the tuned model against the base on the eval split; write eval.json and samples.jsonl."""
    from tunesmith.evaluate.report import metrics_table
    from tunesmith.evaluate.runner import evaluate_run

    report = evaluate_run(run_dir, data, limit, base=not no_base)
    out_console.print(metrics_table(report))
    out_console.print(f"wrote {run_dir / 'eval.json'} and {run_dir / 'samples.jsonl'}")


@app.command()
def models() -> None:
    """List the embedded models (they work offline)."""
    from tunesmith.models.embedded import EMBEDDED

    for alias, model in EMBEDDED.items():
        out_console.print(f"{alias:24} {model.description}")


def main() -> None:
    """Entry point: one clear line for expected errors; ``--debug`` (or TUNESMITH_DEBUG=1) shows tracebacks."""
    debug = "--debug" in sys.argv[1:] or os.environ.get("TUNESMITH_DEBUG") == "1"
    argv = [arg for arg in sys.argv[1:] if arg != "--debug"]
    if not debug:
        # Library deprecation notices are for us (the tests turn them into errors), not for users.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        # Without standalone mode, typer turns Ctrl-C into a returned exit code (130) rather than raising.
        code = app(args=argv, prog_name="tunesmith", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            if code == 130:
                err_console.print("interrupted", markup=False)
            raise SystemExit(code)
    except TunesmithError as err:
        if debug:
            raise
        err_console.print(f"error: {err}", markup=False)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("interrupted", markup=False)
        raise SystemExit(130) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except Exception as err:  # click usage errors carry their own exit code and message
        import click

        if isinstance(err, click.ClickException):
            err.show()
            raise SystemExit(err.exit_code) from None
        if isinstance(err, click.exceptions.Abort):
            raise SystemExit(130) from None
        raise


if __name__ == "__main__":
    main()
