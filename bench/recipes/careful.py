"""(b) A careful hand-written recipe with plain transformers + peft (no tunesmith code).

LoRA r=16, alpha=32 on all linear layers; bf16 autocast where the CPU has bf16 instructions (fp32 otherwise:
emulated bf16 is slower); batches padded to their longest row; prompt tokens masked from the loss.
Optimisation settings match tunesmith's defaults (lr 2e-4, cosine, 5% warm-up, no LoRA dropout: peft's
default too) so the losses compare the implementations, not the hyperparameters.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

from recipes.measure import HeldOut, StepTimer, emit, schedule
from recipes.spec import IGNORE_INDEX, Spec, encode_masked, read_rows


def build_dataset(tokenizer: Any, spec: Spec) -> Dataset:
    """Rows as token ids with the prompt masked; no padding yet (the collator pads each batch)."""
    rows = [encode_masked(tokenizer, row, spec) for row in read_rows(spec.train_csv)]
    return Dataset.from_list(rows)


def build_model(spec: Spec) -> Any:
    """The fp32 base model wrapped with LoRA adapters."""
    model = AutoModelForCausalLM.from_pretrained(spec.model_dir)
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def use_bf16() -> bool:
    """What a careful author picks: bf16 autocast only on a CPU (or GPU) that computes in bf16 natively."""
    import torch

    return torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported()


def main(spec: Spec) -> None:
    """Train and print the measurements."""
    tokenizer = AutoTokenizer.from_pretrained(spec.model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    timer = StepTimer(HeldOut.build(tokenizer, spec), spec.warmup_steps)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(dir=spec.work_dir),
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        **schedule(spec),
        per_device_train_batch_size=spec.rows_per_step,
        seed=spec.seed,
        bf16=use_bf16(),
        use_cpu=True,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        include_num_input_tokens_seen="non_padding",
    )
    trainer = Trainer(
        model=build_model(spec),
        args=args,
        train_dataset=build_dataset(tokenizer, spec),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX),
        callbacks=[timer],
    )
    trainer.train()
    if spec.save_to:  # the adapter, as a user's script would keep it
        trainer.save_model(spec.save_to)
    precision = "bf16 autocast" if use_bf16() else "fp32"
    emit("careful", timer, full=False, method="lora", precision=precision, batches="padded to longest")


if __name__ == "__main__":
    main(Spec.load(sys.argv[1]))
