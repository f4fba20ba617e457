"""The built-in engine against `transformers` `generate` on the embedded model: same greedy answers, tokens/s.

Greedy answers to the marketing-copy prompts, one prompt at a time and in batches, in fp32 (which must give
`generate`'s answers exactly) and in bf16 where the CPU has bf16 instructions (agreement reported). With
--run, the run's LoRA adapter sits on the base (unmerged, as `tunesmith serve` holds it).

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/engine.py [--run RUN] [--prompts 16] [--batch 8] [--max-new-tokens 64]
Writes bench/results/engine.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Time both sides per precision and batch size, interleaved, and compare their answers."""
    from tunesmith.engine import build_engine, generate_tokens
    from tunesmith.models.precision import autocast, cpu_supports_bf16

    args = _arguments()
    model, tokenizer, prompts = _load(args.run, args.prompts)
    eos = {int(tokenizer.eos_token_id)}
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rows: list[dict[str, Any]] = []
    precisions = [p for p in args.precisions if p == "fp32" or cpu_supports_bf16()]
    for precision in precisions:
        started = time.perf_counter()
        engine = build_engine(model, precision)
        build_s = time.perf_counter() - started
        for batch in dict.fromkeys((1, args.batch)):
            with autocast(precision):
                hf, hf_s = _timed(lambda b=batch: _hf(model, tokenizer, ids, args.max_new_tokens, b, eos))
            ours, ours_s = _timed(lambda b=batch, e=engine: generate_tokens(e, ids, args.max_new_tokens, b, eos))
            same = sum(a == b for a, b in zip(hf, ours, strict=True))
            tokens = sum(len(t) for t in ours)
            rows.append(
                {
                    "precision": precision,
                    "batch": batch,
                    "generate_tokens_per_s": round(sum(len(t) for t in hf) / hf_s, 1),
                    "engine_tokens_per_s": round(tokens / ours_s, 1),
                    "speedup": round(hf_s / ours_s, 2),
                    "identical": f"{same}/{len(ids)}",
                    "engine_build_s": round(build_s, 2),
                }
            )
            print(rows[-1], flush=True)
    out = ROOT / "bench" / "results" / "engine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}
    out.write_text(json.dumps({"max_new_tokens": args.max_new_tokens, "machine": machine, "rows": rows}, indent=2))
    print("| precision | batch | generate tok/s | engine tok/s | speed-up | identical greedy answers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['batch']} | {r['generate_tokens_per_s']} | {r['engine_tokens_per_s']} | "
            f"{r['speedup']}x | {r['identical']} |"
        )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a completed LoRA run of the embedded model")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="bf16 only where the CPU has it")
    return parser.parse_args()


def _load(run: Path | None, count: int) -> tuple[Any, Any, list[str]]:
    """The model (the run's, adapter unmerged; else the embedded base) and chat-rendered prompts."""
    from tunesmith.config import load_config
    from tunesmith.data.prepare import read_tables, task_templates
    from tunesmith.data.render import render_pairs
    from tunesmith.data.tokenize import prompt_text
    from tunesmith.models import load_model, load_tokenizer, resolve_model
    from tunesmith.models.run_model import load_run_model

    cfg = load_config(ROOT / "examples" / "marketing-copy" / "config.yaml")
    if run is not None:
        loaded = load_run_model(run)
        model, tokenizer, cfg = loaded.model, loaded.tokenizer, loaded.config
    else:
        resolved = resolve_model(cfg.model.name)
        model, tokenizer = load_model(resolved, cfg.model, cfg.task).eval(), load_tokenizer(resolved, cfg.model)
    pairs, _ = render_pairs(read_tables(cfg.data).train, *task_templates(cfg.data).values())
    return model, tokenizer, [prompt_text(tokenizer, cfg.data, pair.prompt) for pair in pairs[:count]]


def _hf(model: Any, tokenizer: Any, ids: list[list[int]], max_new: int, batch: int, eos: set[int]) -> list[list[int]]:
    """`generate`, greedy, left-padded batches; the answers' tokens up to the end-of-text token."""
    import torch

    pad = tokenizer.pad_token_id
    answers = []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        width = max(len(x) for x in chunk)
        inputs = torch.tensor([[pad] * (width - len(x)) + x for x in chunk])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk])
        with torch.inference_mode():
            out = model.generate(
                input_ids=inputs, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                temperature=None, top_p=None, top_k=None, pad_token_id=pad, eos_token_id=sorted(eos)[0],
            )  # fmt: skip
        for row in out[:, width:].tolist():
            answers.append(row[: next((i for i, t in enumerate(row) if t in eos), len(row))])
    return answers


def _timed(work: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


if __name__ == "__main__":
    main()
