"""Serving throughput on the embedded model: two LoRA adapters of one base behind `tunesmith serve`.

Answers the same greedy chat requests (alternating between the two adapters) four ways: one at a time with
`tunesmith generate`'s code path (no server), then through a real server at concurrency 1, 4 and 16, where
requests that arrive together share batches across adapters. Reports requests/s, generated tokens/s, p50
latency, and whether every answer equals its one-at-a-time answer.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/serve.py [--runs RUN RUN] [--requests 16] [--max-tokens 32]
Without --runs it first trains two 2-step adapter runs (a few minutes on a laptop CPU).
Writes bench/results/serve.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
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


def main() -> None:
    """Train (or take) two runs, time every mode, print and save the table."""
    args = _arguments()
    load_before = round(os.getloadavg()[0], 2)
    runs = args.runs or _train_two(Path(tempfile.mkdtemp(prefix="bench-serve-")))
    jobs = _jobs(runs, args.requests)
    # In a worker thread like the server's: on a busy CPU, torch in the main thread measured several times
    # slower than in any other thread (OpenMP), which would credit the server with a gain it did not make.
    with ThreadPoolExecutor(1) as worker:
        baseline, expected = worker.submit(_one_at_a_time, runs, jobs, args.max_tokens).result()
    print(f"{baseline['mode']}: {baseline['seconds']} s", file=sys.stderr, flush=True)
    rows = [baseline]
    with _server(runs) as url:
        for concurrency in (1, 4, 16):
            rows.append(_served(url, jobs, args.max_tokens, concurrency, expected))
            print(f"{rows[-1]['mode']}: {rows[-1]['seconds']} s", file=sys.stderr, flush=True)
    for row in rows:
        row["speedup"] = round(row["requests_per_s"] / baseline["requests_per_s"], 2)
    out = ROOT / "bench" / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Other work on the machine skews every figure: keep the load beside them.
    machine = {"cpus": os.cpu_count(), "load_average_1m": [load_before, round(os.getloadavg()[0], 2)]}
    result = {"requests": len(jobs), "max_tokens": args.max_tokens, "machine": machine, "rows": rows}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs=2, help="two completed LoRA runs of one base")
    parser.add_argument("--requests", type=int, default=16, help="requests per mode")
    parser.add_argument("--max-tokens", type=int, default=32, help="longest answer in tokens")
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
    return [(runs[i % 2], pairs[i % len(pairs)].prompt) for i in range(count)]


def _one_at_a_time(runs: list[Path], jobs: list[tuple[Path, str]], max_tokens: int) -> tuple[dict[str, Any], list[str]]:
    """`tunesmith generate`'s path, one prompt per call, each run loaded on its own."""
    from tunesmith.evaluate.generation import Decoding, generate
    from tunesmith.models.run_model import load_run_model

    loaded = {run: load_run_model(run) for run in runs}
    decoding = Decoding(max_new_tokens=max_tokens)
    answers, latencies = [], []
    start = time.perf_counter()
    for run_dir, prompt in jobs:
        run = loaded[run_dir]
        began = time.perf_counter()
        answers.extend(generate(run.model, run.tokenizer, run.config, [prompt], decoding, 1, run.precision))
        latencies.append(time.perf_counter() - began)
    seconds = time.perf_counter() - start
    tokenizer = next(iter(loaded.values())).tokenizer
    return _row("generate, one at a time", 1, seconds, latencies, answers, tokenizer, answers), answers


@contextlib.contextmanager
def _server(runs: list[Path]) -> Iterator[str]:
    """A real server for the runs on a free port; yields its chat completions URL."""
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
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _served(
    url: str, jobs: list[tuple[Path, str]], max_tokens: int, concurrency: int, expected: list[str]
) -> dict[str, Any]:
    import httpx
    from transformers import AutoTokenizer

    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency))

    def ask(job: tuple[Path, str]) -> tuple[str, float]:
        body = {"model": job[0].name, "messages": [{"role": "user", "content": job[1]}], "max_tokens": max_tokens}
        began = time.perf_counter()
        reply = client.post(url, json=body)
        reply.raise_for_status()
        return reply.json()["choices"][0]["message"]["content"], time.perf_counter() - began

    ask(jobs[0])  # warm-up: first-call allocations
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        results = list(executor.map(ask, jobs))
    seconds = time.perf_counter() - start
    answers = [text for text, _ in results]
    tokenizer = AutoTokenizer.from_pretrained(jobs[0][0] / "model")
    latencies = [s for _, s in results]
    return _row(
        f"tunesmith serve, concurrency {concurrency}", concurrency, seconds, latencies, answers, tokenizer, expected
    )


def _row(
    mode: str, concurrency: int, seconds: float, latencies: list[float], answers: list[str], tokenizer: Any,
    expected: list[str],
) -> dict[str, Any]:  # fmt: skip
    # Tokens counted the same way for every mode: the answer text re-tokenised.
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return {
        "mode": mode,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(answers) / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "p50_latency_s": round(statistics.median(latencies), 3),
        "same_answers": answers == expected,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | requests/s | tokens/s | p50 latency (s) | speedup | same answers |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['requests_per_s']} | {r['tokens_per_s']} | {r['p50_latency_s']} | "
            f"{r['speedup']}x | {'yes' if r['same_answers'] else 'NO'} |"
        )
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
