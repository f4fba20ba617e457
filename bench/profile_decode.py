"""Where a decode step goes: torch.profiler over the engine's steps and over `generate`'s, on the embedded model.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/profile_decode.py [--run RUN] [--batch 1] [--steps 16] [--precision bf16]
Prints the top operators by self CPU time for each side and the wall time per step.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def main() -> None:
    """Profile both sides on the same prompts."""
    from torch.profiler import ProfilerActivity, profile

    from tunesmith.engine import build_engine, generate_tokens

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    from engine import _load  # bench/engine.py: the model and rendered prompts

    model, tokenizer, prompts = _load(args.run, args.batch)
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    engine = build_engine(model, args.precision)
    sides: dict[str, Any] = {
        "engine": lambda: generate_tokens(engine, ids, args.steps, args.batch, set()),
        "generate": lambda: _generate(model, tokenizer, ids, args.steps, args.precision),
    }
    for name, work in sides.items():
        work()  # warm-up
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            work()
        seconds = time.perf_counter() - started
        print(f"## {name}: {seconds / args.steps * 1000:.1f} ms per step (profiled), batch {args.batch}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def _generate(model: Any, tokenizer: Any, ids: list[list[int]], steps: int, precision: str) -> Any:
    import torch

    from tunesmith.models.precision import autocast

    pad = tokenizer.pad_token_id
    width = max(len(x) for x in ids)
    inputs = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    with torch.inference_mode(), autocast(precision):
        return model.generate(
            input_ids=inputs, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
            temperature=None, top_p=None, top_k=None, pad_token_id=pad,
        )  # fmt: skip


if __name__ == "__main__":
    main()
