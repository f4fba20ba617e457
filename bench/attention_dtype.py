"""bf16 decode with the decode step's attention (and the KV cache) in fp32 against all-bf16, interleaved A/B.

Part 1, one attention call at SmolLM2-135M shapes (9 query / 3 kv heads, head 64, one query): bf16 against
fp32 (cache held in fp32) at the engine's thread count. Part 2, end to end on the embedded model: the engine's
bf16 decode with ``cache_dtype`` fp32 (the engine's default) against bf16 (the path before it), batch 1 and 8:
two decoders over the same rows, their steps timed alternately (A B, then B A) so both see the same load; then
each side's greedy answers to the prompts in batches of 8, compared.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/attention_dtype.py [--steps 32] [--prompts 16]
Writes bench/results/attention_dtype.json and prints medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """The micro-benchmark, then the end-to-end A/B."""
    import torch

    from tunesmith.models.precision import cpu_supports_bf16

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="micro-benchmark rounds")
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed per side and batch size")
    parser.add_argument("--prompts", type=int, default=16, help="prompts whose greedy answers are compared")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    if not cpu_supports_bf16():
        raise SystemExit("this CPU has no bf16 instructions: the engine decodes in fp32 here, nothing to compare")
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    result["micro"] = _micro(args.repeats)
    result["end_to_end"] = _end_to_end(args)
    out = ROOT / "bench" / "results" / "attention_dtype.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _micro(repeats: int) -> list[dict[str, Any]]:
    """Median ms per attention call, bf16 against fp32, per (rows, keys); A and B alternate in each repeat."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    rows = []
    for n, length in ((1, 128), (1, 512), (8, 128), (8, 512)):
        q = torch.randn(n, 9, 1, 64, generator=generator)
        k, v = torch.randn(n, 3, length, 64, generator=generator), torch.randn(n, 3, length, 64, generator=generator)
        inputs = {"bf16": (q.bfloat16(), k.bfloat16(), v.bfloat16()), "fp32": (q, k, v)}
        times: dict[str, list[float]] = {name: [] for name in inputs}
        with torch.inference_mode():
            for _ in range(max(repeats, 5)):
                for name, (a, b, c) in inputs.items():
                    F.scaled_dot_product_attention(a, b, c, enable_gqa=True)
                    started = time.perf_counter()
                    for _ in range(100):
                        F.scaled_dot_product_attention(a, b, c, enable_gqa=True)
                    times[name].append((time.perf_counter() - started) * 10)  # ms per call
        row = {"rows": n, "keys": length, **{f"{k}_ms": round(statistics.median(t), 3) for k, t in times.items()}}
        row["load_average_1m"] = round(os.getloadavg()[0], 2)
        print(row, flush=True)
        rows.append(row)
    return rows


def _end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    """Decode steps timed A, B, A, B on two decoders over the same rows; then each side's greedy answers."""
    import torch
    from engine import _load  # bench/engine.py: the embedded model and rendered marketing prompts

    from tunesmith.engine import build_engine, generate_tokens

    model, tokenizer, prompts = _load(None, args.prompts)
    eos = {int(tokenizer.eos_token_id)}
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    engine = build_engine(model, "bf16")
    build = engine.decoder
    sides = {"fp32_attention": torch.float32, "bf16_attention": torch.bfloat16}

    def decoder(cache_dtype: Any) -> Any:
        fresh = build()
        fresh.cache_dtype = cache_dtype
        return fresh

    out: dict[str, Any] = {"steps": args.steps, "batches": []}
    for batch in (1, 8):
        decoders = {name: decoder(dtype) for name, dtype in sides.items()}
        tokens = {name: d.prefill(ids[:batch], [-1] * batch).argmax(-1) for name, d in decoders.items()}
        times: dict[str, list[float]] = {name: [] for name in sides}
        loads = [os.getloadavg()[0]]
        for step in range(args.steps + 2):  # the first two are warm-up
            for name in sides if step % 2 == 0 else reversed(sides):
                started = time.perf_counter()
                tokens[name] = decoders[name].step(tokens[name]).argmax(-1)
                if step >= 2:
                    times[name].append(time.perf_counter() - started)
        loads.append(os.getloadavg()[0])
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        row = {
            "batch": batch,
            "median_ms_per_step": {k: round(v, 1) for k, v in medians.items()},
            "tokens_per_s": {k: round(batch * 1000 / v, 2) for k, v in medians.items()},
            "speedup": round(medians["bf16_attention"] / medians["fp32_attention"], 2),
            "load_average_1m": [round(x, 2) for x in loads],
        }
        print(row, flush=True)
        out["batches"].append(row)
    answers, speeds = {}, {}
    for name, dtype in sides.items():
        engine.decoder = lambda dtype=dtype: decoder(dtype)  # type: ignore[method-assign]
        started = time.perf_counter()
        answers[name] = generate_tokens(engine, ids, args.max_new_tokens, 8, eos)
        speeds[name] = round(sum(len(a) for a in answers[name]) / (time.perf_counter() - started), 2)
        print({"side": name, "generate_tokens_per_s": speeds[name], "load": os.getloadavg()[0]}, flush=True)
    same = sum(a == b for a, b in zip(answers["fp32_attention"], answers["bf16_attention"], strict=True))
    out["answers"] = {
        "prompts": len(ids),
        "batch": 8,
        "max_new_tokens": args.max_new_tokens,
        "identical_greedy_answers": f"{same}/{len(ids)}",
        "tokens_per_s_one_run_each": speeds,
    }
    return out


if __name__ == "__main__":
    main()
