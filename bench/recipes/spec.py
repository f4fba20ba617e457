"""What every recipe process is told (the job spec), and the text every recipe trains on.

Light on purpose: the orchestrator imports this module without paying for torch or transformers.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "examples" / "marketing-copy" / "ads.csv"
MODEL = "smollm2-135m-instruct"
PROMPT = "Write a {event} ad for {product} ({product_type}) aimed at {audience}."
RESPONSE = "{ad_text}"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Spec:
    """One recipe run: the same data, model, rows per step and steps for every recipe."""

    recipe: str
    model_dir: str
    train_csv: str
    heldout_csv: str
    work_dir: str
    steps: int
    rows_per_step: int
    max_length: int
    warmup_steps: int
    seed: int = 42
    prompt: str = PROMPT  # templates over the CSV's columns
    response: str = RESPONSE
    epochs: int = 0  # > 0: train this many epochs (``steps`` is then ignored)
    score_heldout: bool = True  # False for whole-process timing: the process only trains and saves
    save_to: str = ""  # where the trained model is saved ("" = not saved)

    def save(self, path: Path) -> None:
        """Write the spec as JSON for a child process."""
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Spec:
        """Read a spec written by :meth:`save`."""
        return cls(**json.loads(Path(path).read_text()))


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of stripped strings."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle)]


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows (dicts with the same keys) as a CSV file."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def chat_prompt(tokenizer: Any, row: dict[str, str], spec: Spec) -> str:
    """The prompt rendered through the tokenizer's chat template, up to where the assistant starts answering."""
    messages = [{"role": "user", "content": spec.prompt.format(**row)}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def chat_pair(tokenizer: Any, row: dict[str, str], spec: Spec) -> tuple[str, str]:
    """(prompt text, response text) rendered through the tokenizer's chat template.

    The prompt ends where the assistant starts answering; the response carries the end-of-turn marker.
    """
    messages = [{"role": "user", "content": spec.prompt.format(**row)}]
    head = chat_prompt(tokenizer, row, spec)
    answer = {"role": "assistant", "content": spec.response.format(**row)}
    full = str(tokenizer.apply_chat_template([*messages, answer], tokenize=False))
    return head, full[len(head) :]


def encode_masked(tokenizer: Any, row: dict[str, str], spec: Spec) -> dict[str, list[int]]:
    """Token ids with the prompt masked out of the loss; prompt and response are tokenised apart."""
    head, tail = chat_pair(tokenizer, row, spec)
    max_length = spec.max_length
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    input_ids = (head_ids + tail_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(head_ids) + tail_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def split_data(source: Path, work_dir: Path, heldout_rows: int, seed: int) -> tuple[Path, Path]:
    """Snapshot the data into ``work_dir`` and hold out a fixed set of rows that no recipe trains on."""
    rows = read_rows(source)
    random.Random(seed).shuffle(rows)
    train, heldout = work_dir / "train.csv", work_dir / "heldout.csv"
    write_rows(heldout, rows[:heldout_rows])
    write_rows(train, rows[heldout_rows:])
    return train, heldout


def resolve_model_dir() -> str:
    """The embedded model as a local Hugging Face directory (tunesmith converts the GGUF once and caches it)."""
    from tunesmith.models import resolve_model

    return resolve_model(MODEL).location
