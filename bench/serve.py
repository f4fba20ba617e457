"""Serving throughput on the embedded model: `tunesmith serve` (its engine, then transformers' generate) and
llama.cpp's `llama-server` on the same run, greedy chat requests at concurrency 1 and 8.

The modes run interleaved (each concurrency: engine, generate path, llama-server) so that other work on the
machine weighs on all of them alike; ratios between them mean more than any one figure. The generate path
is the same server with the built-in engine switched off (what `tunesmith serve` did before it). llama-server
joins when it is on PATH or given with --llama-server, on the run exported with
`tunesmith export RUN --to gguf --quant f16` (or --gguf). Reports requests/s, completion tokens/s, p50
latency, and how many answers equal the engine's.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/serve.py [--runs RUN [RUN ...]] [--requests 16] [--max-tokens 64]
Without --runs it first trains two 2-step adapter runs (a few minutes on a laptop CPU); with several runs the
requests alternate between them (llama-server serves the first).
Writes bench/results/serve.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "marketing-copy" / "config.yaml"
CONCURRENCY = (1, 8)


def main() -> None:
    """Train (or take) the runs, time every mode, print and save the table."""
    args = _arguments()
    load_before = round(os.getloadavg()[0], 2)
    runs = args.runs or _train_two(Path(tempfile.mkdtemp(prefix="bench-serve-")))
    jobs = _jobs(runs, args.requests)
    llama = _llama_server(args.llama_server)
    if llama is None:
        print("llama.cpp skipped: no llama-server on PATH (give one with --llama-server)", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        engine_url, app = stack.enter_context(_server(runs))
        llama_url = stack.enter_context(_llama(llama, _gguf(runs[0], args.gguf))) if llama else None
        for concurrency in CONCURRENCY:
            first = len(rows)
            _engine_on(app, True)
            ours = _served(engine_url, jobs, args.max_tokens, concurrency, None, "tunesmith serve (engine)")
            rows.append(ours)
            if not args.skip_generate:
                _engine_on(app, False)
                rows.append(_served(engine_url, jobs, args.max_tokens, concurrency, ours, "tunesmith serve (generate)"))
            if llama_url:
                rows.append(_served(llama_url, jobs, args.max_tokens, concurrency, ours, "llama-server f16"))
            for row in rows[first:]:
                print(f"{row['mode']} c={concurrency}: {row['seconds']} s", file=sys.stderr, flush=True)
            _engine_on(app, True)
    out = ROOT / "bench" / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Other work on the machine skews every figure: keep the load beside them.
    machine = {"cpus": os.cpu_count(), "load_average_1m": [load_before, round(os.getloadavg()[0], 2)]}
    machine["bf16_instructions"] = _bf16()
    result = {"requests": len(jobs), "max_tokens": args.max_tokens, "machine": machine, "rows": rows}
    result["llama_server"] = llama or "skipped: no llama-server on PATH"
    result["ratios"] = _ratios(rows)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))
    if llama is None:
        print("llama.cpp skipped: no llama-server on PATH (give one with --llama-server)")
    print(json.dumps(result["ratios"], indent=2))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", help="completed LoRA runs of one base")
    parser.add_argument("--requests", type=int, default=16, help="requests per mode")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest answer in tokens")
    parser.add_argument("--llama-server", help="path to llama.cpp's llama-server (default: on PATH, if there)")
    parser.add_argument("--gguf", type=Path, help="the first run as GGUF (default: export it as f16)")
    parser.add_argument("--skip-generate", action="store_true", help="leave out the generate path (the slowest)")
    return parser.parse_args()


def _train_two(root: Path) -> list[Path]:
    from tunesmith.config import load_config
    from tunesmith.train.runner import train

    quick = ["train.max_steps=2", "train.batch_size=2", "train.learning_rate=2e-3", "data.eval_fraction=0.01"]
    first = load_config(EXAMPLE, [*quick, "name=copy-a"])
    second = load_config(EXAMPLE, [*quick, "name=copy-b", "data.system=Answer in one short sentence."])
    return [train(cfg, output_dir=root / "runs").run_dir for cfg in (first, second)]


def _jobs(runs: list[Path], count: int) -> list[tuple[Path, str]]:
    from tunesmith.data.prepare import read_tables, task_templates
    from tunesmith.data.render import render_pairs
    from tunesmith.rundir import read_run

    config, _ = read_run(runs[0])
    pairs, _ = render_pairs(read_tables(config.data).train, *task_templates(config.data).values())
    return [(runs[i % len(runs)], pairs[i % len(pairs)].prompt) for i in range(count)]


def _engine_on(app: Any, on: bool) -> None:
    """Switch the built-in engine on or off for every model (off: transformers' generate answers)."""
    for route in app.state.pool.routes.values():
        engine = route.engine
        if not hasattr(engine, "saved_fast"):
            engine.saved_fast = engine.fast
        engine.fast = engine.saved_fast if on else None


@contextlib.contextmanager
def _server(runs: list[Path]) -> Iterator[tuple[str, Any]]:
    """A real server for the runs on a free port; yields its chat completions URL and the app."""
    import uvicorn

    from tunesmith.serve.app import create_app
    from tunesmith.serve.pool import load_pool

    port = _free_port()
    app = create_app(load_pool(runs))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _llama_server(given: str | None) -> str | None:
    found = given or shutil.which("llama-server")
    if given and not Path(given).is_file():
        raise SystemExit(f"--llama-server {given}: no such file")
    return found


def _gguf(run: Path, given: Path | None) -> Path:
    """The run as an f16 GGUF: the file given, or one exported now with `tunesmith export`."""
    if given is not None:
        return given
    target = run / "export" / "gguf-f16"
    found = sorted(target.glob("*.gguf")) if target.is_dir() else []
    if not found:
        exe = Path(sys.executable).with_name("tunesmith")
        subprocess.run([str(exe), "export", str(run), "--to", "gguf", "--quant", "f16"], check=True)
        found = sorted(target.glob("*.gguf"))
    return found[0]


@contextlib.contextmanager
def _llama(binary: str, gguf: Path) -> Iterator[str]:
    """llama-server on the GGUF (2 threads, 8 parallel slots, the file's chat template) on a free port."""
    import httpx

    port = _free_port()
    command = [binary, "-m", str(gguf), "-t", str(os.cpu_count() or 2), "-np", "8", "-c", "8192", "--jinja"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{binary}: llama-server did not start on {gguf}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _served(
    url: str, jobs: list[tuple[Path, str]], max_tokens: int, concurrency: int, reference: dict[str, Any] | None,
    mode: str,
) -> dict[str, Any]:  # fmt: skip
    import httpx
    from transformers import AutoTokenizer

    client = httpx.Client(timeout=900, limits=httpx.Limits(max_connections=concurrency))

    def ask(job: tuple[Path, str]) -> tuple[str, int, float]:  # answer, usage tokens, seconds
        body = {"model": job[0].name, "messages": [{"role": "user", "content": job[1]}], "max_tokens": max_tokens}
        body |= {"temperature": 0}
        began = time.perf_counter()
        reply = client.post(url, json=body)
        reply.raise_for_status()
        data = reply.json()
        text = data["choices"][0]["message"]["content"] or ""
        return text.strip(), int(data["usage"]["completion_tokens"]), time.perf_counter() - began

    ask(jobs[0])  # warm-up: first-call allocations
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        results = list(executor.map(ask, jobs))
    seconds = time.perf_counter() - start
    answers = [text for text, _, _ in results]
    # Every server's answers re-tokenised with the run's tokenizer, so all count tokens alike.
    tokenizer = AutoTokenizer.from_pretrained(jobs[0][0] / "model")
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    expected = reference["answers"] if reference else answers
    return _row(mode, concurrency, seconds, [s for _, _, s in results], answers, tokens, expected)


def _row(
    mode: str, concurrency: int, seconds: float, latencies: list[float], answers: list[str], tokens: int,
    expected: list[str],
) -> dict[str, Any]:  # fmt: skip
    return {
        "mode": mode,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(answers) / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "p50_latency_s": round(statistics.median(latencies), 3),
        "same_as_engine": f"{sum(a == b for a, b in zip(answers, expected, strict=True))}/{len(answers)}",
        "answers": answers,
    }


def _ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """llama-server over the engine and the generate path over the engine, per concurrency; c=8 over c=1."""
    speed = {(r["mode"], r["concurrency"]): r["tokens_per_s"] for r in rows}
    ratios: dict[str, float] = {}
    for c in CONCURRENCY:
        ours = speed[("tunesmith serve (engine)", c)]
        if ("llama-server f16", c) in speed:
            ratios[f"llama_over_engine_c{c}"] = round(speed[("llama-server f16", c)] / ours, 2)
        if ("tunesmith serve (generate)", c) in speed:
            ratios[f"engine_over_generate_c{c}"] = round(ours / speed[("tunesmith serve (generate)", c)], 2)
    ratios["engine_c8_over_c1"] = round(
        speed[("tunesmith serve (engine)", 8)] / speed[("tunesmith serve (engine)", 1)], 2
    )
    return ratios


def _bf16() -> bool:
    from tunesmith.models.precision import cpu_supports_bf16

    return cpu_supports_bf16()


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | concurrency | requests/s | completion tokens/s | p50 latency (s) | same answers as engine |"]
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['requests_per_s']} | {r['tokens_per_s']} | "
            f"{r['p50_latency_s']} | {r['same_as_engine']} |"
        )
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
