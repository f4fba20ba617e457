"""(a) The seed guide's recipe with plain transformers: Trainer, full fine-tune, fp32, rows padded to max_length.

No tunesmith code. The guide's defaults stay (learning rate 2e-5, loss on every non-pad token through
DataCollatorForLanguageModeling); only the step count, batch size and logging are set by the benchmark.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from recipes.measure import HeldOut, StepTimer, emit, schedule
from recipes.spec import Spec, chat_pair, read_rows


def build_dataset(tokenizer: Any, spec: Spec) -> Dataset:
    """Every row rendered through the chat template and padded to max_length, as the guide does."""
    texts = ["".join(chat_pair(tokenizer, row, spec)) for row in read_rows(spec.train_csv)]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=spec.max_length)
    return Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})


def main(spec: Spec) -> None:
    """Train and print the measurements."""
    tokenizer = AutoTokenizer.from_pretrained(spec.model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec.model_dir)
    timer = StepTimer(HeldOut.build(tokenizer, spec), spec.warmup_steps)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(dir=spec.work_dir),
        learning_rate=2e-5,
        **schedule(spec),
        per_device_train_batch_size=spec.rows_per_step,
        seed=spec.seed,
        use_cpu=True,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        include_num_input_tokens_seen="non_padding",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=build_dataset(tokenizer, spec),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[timer],
    )
    trainer.train()
    emit("seed", timer, full=True, method="full", precision="fp32", batches="padded to max_length")


if __name__ == "__main__":
    main(Spec.load(sys.argv[1]))
