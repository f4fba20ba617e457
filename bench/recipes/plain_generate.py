"""The plain batched ``generate`` loop a user would write to answer evaluation prompts (no tunesmith code).

Base model plus the run's LoRA adapter (peft, unmerged), fp32, prompts through the chat template, left
padding, greedy decoding, a fixed batch size. Run: ``python -m recipes.plain_generate JOB.json``; the job
names the base model, the adapter, the CSV, the prompt template, the batch size and the answer length
(``base_too``: answer with the adapter switched off first, then with it).
Prints one JSON line: seconds spent generating and every answer (in first-appearance order of the prompts).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from recipes.spec import read_rows


def unique_prompts(job: dict[str, Any], tokenizer: Any) -> list[str]:
    """Each distinct prompt once, rendered through the chat template, in the order it first appears."""
    texts = dict.fromkeys(job["prompt"].format(**row) for row in read_rows(job["rows_csv"]))
    messages = [[{"role": "user", "content": text}] for text in texts]
    return [str(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) for m in messages]


@torch.no_grad()
def answer(model: Any, tokenizer: Any, prompts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy answers, ``batch_size`` prompts at a time."""
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return [text.strip() for text in answers]


def main(job: dict[str, Any]) -> None:
    """Load, answer every prompt, print the timing and the answers."""
    tokenizer = AutoTokenizer.from_pretrained(job["base"], padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(job["base"]), job["adapter"]).eval()
    prompts = unique_prompts(job, tokenizer)
    started = time.perf_counter()
    if job.get("base_too"):  # base against tuned, as `tunesmith eval` does without --no-base
        with model.disable_adapter():
            answer(model, tokenizer, prompts, job["batch_size"], job["max_new_tokens"])
    answers = answer(model, tokenizer, prompts, job["batch_size"], job["max_new_tokens"])
    seconds = time.perf_counter() - started
    result = {"recipe": "plain-generate", "prompts": len(prompts), "batch_size": job["batch_size"]}
    print(json.dumps(result | {"generate_seconds": seconds, "answers": answers}), flush=True)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        main(json.load(handle))
