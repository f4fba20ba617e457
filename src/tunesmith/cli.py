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
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Training processes on this machine (DDP).")] = 1,
    nnodes: Annotated[int, typer.Option("--nnodes", min=1, help="Machines taking part.")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", min=0, help="This machine's rank (0 writes the run).")] = 0,
    master_addr: Annotated[str, typer.Option("--master-addr", help="Address of machine 0.")] = "127.0.0.1",
    master_port: Annotated[
        int | None, typer.Option("--master-port", help="Rendezvous port; unset: a free one.")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", hidden=True)] = None,
) -> None:
    """Fine-tune the model the config describes and write a run directory."""
    import os

    from tunesmith.train.runner import SUMMARY_METRICS, train_from_file

    if (nproc > 1 or nnodes > 1) and "WORLD_SIZE" not in os.environ:
        from tunesmith.train.launch import Topology, launch

        topology = Topology(nproc, nnodes, node_rank, master_addr, master_port)
        raise typer.Exit(launch(config, set_ or [], output_dir, resume, topology))
    result = train_from_file(config, set_ or [], output_dir, resume, run_dir)
    if os.environ.get("RANK", "0") != "0":
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k in SUMMARY_METRICS)
    out_console.print(f"completed: {result.run_dir}")
    out_console.print(f"throughput: {result.tokens_per_second:.0f} tokens/s" + (f"; {metrics}" if metrics else ""))
    out_console.print("time: " + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in result.timings.items()))


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
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate only the first N inputs (conversations: N conversations).")
    ] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Score only the tuned model, not the base.")] = False,
    no_loss: Annotated[
        bool, typer.Option("--no-loss", help="Skip the teacher-forced loss over the references (metrics only).")
    ] = False,
    loss_references: Annotated[
        str | None,
        typer.Option(
            "--loss-references",
            help="first | all: the loss over the first reference of each input or over all of them "
            "(default: the run's eval.loss_references, first).",
        ),
    ] = None,
) -> None:
    """Score the tuned model against the base on the eval split; write eval.json and samples.jsonl."""
    from tunesmith.evaluate.report import metrics_table
    from tunesmith.evaluate.runner import evaluate_run

    report = evaluate_run(run_dir, data, limit, base=not no_base, loss=not no_loss, loss_references=loss_references)
    out_console.print(metrics_table(report))
    out_console.print(f"wrote {run_dir / 'eval.json'} and {run_dir / 'samples.jsonl'}")


@app.command()
def predict(
    run_dir: RunDirArg,
    input_file: Annotated[Path, typer.Option("--input", help="Rows to classify (the run's data.text template).")],
    output: Annotated[Path, typer.Option("--output", help="CSV to write: the input plus label and probability.")],
) -> None:
    """Classify every row of a table with a classification run's model."""
    from tunesmith.evaluate.classify import predict_file

    rows = predict_file(run_dir, input_file, output)
    out_console.print(f"wrote {rows} predictions to {output}")


@app.command()
def doctor(
    config: ConfigArg,
    set_: SetOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    no_timing: Annotated[
        bool, typer.Option("--no-timing", help="Skip the timed steps that estimate memory and time (fast).")
    ] = False,
) -> None:
    """Check a config and its data before training: rendered examples, lengths, duplicates, leakage, cost."""
    from tunesmith.doctor import diagnose_file, renderables

    report = diagnose_file(config, set_ or [], timing=not no_timing)
    if json_:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        for item in renderables(report, styled=out_console.is_terminal):
            out_console.print(item)
    if report.blocking:
        raise typer.Exit(1)


runs_app = typer.Typer(help="The run registry (runs/index.db): list, show and compare runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
RunsDirOpt = Annotated[Path, typer.Option("--dir", help="The runs directory (its index.db is the registry).")]


@runs_app.command("list")
def runs_list(
    sort: Annotated[str | None, typer.Option("--sort", help="Best first by this metric (or column).")] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="key=value (also !=, <, >, <=, >=) on a column, metric or config key."),
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    wide: Annotated[bool, typer.Option("--wide", help="Every column (model, kind, created, several metrics).")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Every field of every run, as JSON.")] = False,
) -> None:
    """List recorded runs (run directories not yet in the registry are added first)."""
    from tunesmith.console import print_unwrapped
    from tunesmith.review.display import rows_json, runs_table
    from tunesmith.track.registry import list_runs

    listing = list_runs(runs_dir, sort, filter_ or [])
    if listing.warning:
        err_console.print(f"warning: {listing.warning}", markup=False)
    if json_:
        typer.echo(rows_json(listing.rows))
        return
    table = runs_table(listing.rows, sort, width=out_console.width, wide=wide)
    print_unwrapped(table) if wide else out_console.print(table)


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(help="A run id or run directory.", show_default=False)],
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Everything the registry holds about one run."""
    from tunesmith.review.display import run_details
    from tunesmith.track.registry import get_row

    out_console.print(run_details(get_row(runs_dir, run)))


@runs_app.command("compare")
def runs_compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids or run directories.", show_default=False)],
    runs_dir: RunsDirOpt = Path("runs"),
    plot: Annotated[Path | None, typer.Option("--plot", help="Where to write the curves PNG.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=0, help="Sample answers shown side by side.")] = 3,
) -> None:
    """Config keys that differ, metrics with deltas, overlaid curves and answers side by side."""
    from tunesmith.review.compare import compare_runs, renderables

    for item in renderables(compare_runs(runs, runs_dir, plot, samples)):
        out_console.print(item)


@app.command()
def report(
    run_dir: RunDirArg,
    output: Annotated[Path | None, typer.Option("--output", help="HTML file (default RUN_DIR/report.html).")] = None,
) -> None:
    """Write a self-contained HTML report of a run (and refresh its model card)."""
    from tunesmith.review.html_report import write_html_report

    for path in write_html_report(run_dir, output):
        out_console.print(f"wrote {path}")


@app.command()
def tune(
    config: ConfigArg,
    set_: SetOpt = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where study directories are created.")] = Path(
        "tune"
    ),
    address: Annotated[
        str | None, typer.Option("--address", help="Run on an existing Ray cluster: auto or ray://HOST:PORT.")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this study directory up to tune.num_trials.")
    ] = None,
) -> None:
    """Search hyperparameters (the config's tune section) on Ray Tune; write trials.csv, best.yaml, plot.png."""
    from tunesmith.tune.outputs import summary_table
    from tunesmith.tune.study import tune_from_file

    result = tune_from_file(config, set_ or [], output_dir, address, resume)
    out_console.print(summary_table(result.rows, result.metric, result.mode, result.best))
    for kind, path in result.outputs.items():
        out_console.print(f"{kind}: {path}")
    if result.interrupted:
        raise typer.Exit(130)


@app.command()
def export(
    run_dir: RunDirArg,
    to: Annotated[
        str, typer.Option("--to", help="merged (safetensors), gguf (llama.cpp) or ollama (GGUF, Modelfile).")
    ],
    quant: Annotated[
        str | None, typer.Option("--quant", help="GGUF tensor type: f16, bf16, q8_0 (default) or q4_0.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Folder to write (default RUN_DIR/export/<kind>[-<quant>]).")
    ] = None,
) -> None:
    """Export a run's model: the adapter merged into full weights, a GGUF file, or an Ollama folder."""
    from tunesmith.export import export_run

    result = export_run(run_dir, to, quant, output)
    for path in result.files:
        out_console.print(f"wrote {path} ({_size(path.stat().st_size)})", markup=False)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
    if result.command:
        out_console.print(f"next: {result.command}", markup=False)


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


@app.command()
def serve(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Completed run directories to serve (their bases are served too).")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on; beyond 127.0.0.1 needs --api-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="TUNESMITH_API_KEY", help="Require Authorization: Bearer KEY."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="builtin (the embedded engine), vllm (vLLM's server, CUDA) or llama.cpp (llama-cpp-python's "
            "server on the run's GGUF export)."
        ),
    ] = "builtin",
) -> None:
    """Serve runs over an OpenAI-compatible HTTP API (chat, completions, classify, models)."""
    from tunesmith.serve import serve as serve_runs

    serve_runs(run_dirs, host, port, api_key, engine)


@app.command()
def models() -> None:
    """List the embedded models (they work offline)."""
    from tunesmith.models.embedded import EMBEDDED

    for alias, model in EMBEDDED.items():
        out_console.print(f"{alias:24} {model.description}")


@app.command()
def ui(
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 7860,
    runs: Annotated[Path, typer.Option("--runs", help="The runs directory (new runs go here).")] = Path("runs"),
    data_root: Annotated[
        Path, typer.Option("--data-root", help="The only folder whose files the UI reads and lists.")
    ] = Path("."),
    token: Annotated[
        str | None, typer.Option("--token", help="Required on every request (or set TUNESMITH_UI_TOKEN).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest upload.")] = 50.0,
) -> None:
    """Start the web UI: data, preview, training with live curves, runs, compare, chat."""
    from tunesmith.ui.server import serve_ui

    serve_ui(host, port, runs, data_root, token, max_upload_mb)


def main() -> None:
    """Entry point: one clear line for expected errors; ``--debug`` (or TUNESMITH_DEBUG=1) shows tracebacks."""
    debug = "--debug" in sys.argv[1:] or os.environ.get("TUNESMITH_DEBUG") == "1"
    argv = [arg for arg in sys.argv[1:] if arg != "--debug"]
    if not debug:
        # Library deprecation notices are for us (the tests turn them into errors), not for users.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        # Standalone mode: typer reports usage errors itself and turns Ctrl-C into exit code 130.
        app(args=argv, prog_name="tunesmith", standalone_mode=True)
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


if __name__ == "__main__":
    main()
