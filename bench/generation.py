"""Batched generation against one prompt at a time, on the embedded model: same outputs, tokens/s both ways.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/generation.py [--prompts 16] [--batch 8] [--max-new-tokens 48]
Writes bench/results/generation.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tunesmith.config import load_config
from tunesmith.data.prepare import read_tables, task_templates
from tunesmith.data.render import render_pairs
from tunesmith.evaluate.generation import Decoding, generate
from tunesmith.models import load_model, load_tokenizer, resolve_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Time both ways in fp32 and bf16 and compare their outputs."""
    args = _arguments()
    cfg = load_config(ROOT / "examples" / "marketing-copy" / "config.yaml")
    resolved = resolve_model(cfg.model.name)
    tokenizer = load_tokenizer(resolved, cfg.model)
    model = load_model(resolved, cfg.model, cfg.task).eval()
    pairs, _ = render_pairs(read_tables(cfg.data).train, *task_templates(cfg.data).values())
    prompts = [pair.prompt for pair in pairs[: args.prompts]]
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    results = []
    for precision in ("fp32", "bf16"):
        timed = {}
        for batch in (1, args.batch):
            start = time.perf_counter()
            outputs = generate(model, tokenizer, cfg, prompts, decoding, batch, precision)
            seconds = time.perf_counter() - start
            tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
            timed[batch] = (outputs, tokens / seconds)
        same = sum(a == b for a, b in zip(timed[1][0], timed[args.batch][0], strict=True))
        results.append(
            {
                "precision": precision,
                "one_at_a_time_tokens_per_s": round(timed[1][1], 1),
                "batched_tokens_per_s": round(timed[args.batch][1], 1),
                "speedup": round(timed[args.batch][1] / timed[1][1], 2),
                "identical_outputs": f"{same}/{len(prompts)}",
            }
        )
    out = ROOT / "bench" / "results" / "generation.json"
    out.write_text(json.dumps({"prompts": len(prompts), "batch": args.batch, "results": results}, indent=2) + "\n")
    print("| precision | one at a time tok/s | batched tok/s | speed-up | identical outputs |\n|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['precision']} | {r['one_at_a_time_tokens_per_s']} | {r['batched_tokens_per_s']} | "
            f"{r['speedup']}x | {r['identical_outputs']} |"
        )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    return parser.parse_args()


if __name__ == "__main__":
    main()
