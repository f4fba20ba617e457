"""``model/README.md``: a model card in the format the Hugging Face hub reads (YAML front matter + markdown)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tunesmith.rundir import atomic_write
from tunesmith.track.runview import RunView, load_run
from tunesmith.track.summary import data_rows, metric_table, overview

# Hub ids of the embedded models, so the card links the real base model.
EMBEDDED_HUB_IDS = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
}
PIPELINE_TAGS = {
    "causal_lm": "text-generation",
    "seq2seq": "text2text-generation",
    "classification": "text-classification",
}


def write_model_card(run_dir: Path) -> Path:
    """Write ``run_dir/model/README.md`` from the run's files; returns its path."""
    view = load_run(run_dir)
    path = run_dir / "model" / "README.md"
    atomic_write(path, model_card(view))
    return path


def model_card(view: RunView, merged: bool = False) -> str:
    """The card's text: front matter (base_model, library_name, tags, license) then the run's facts.

    ``merged``: the card of an adapter folded into full weights (``tunesmith export --to merged``).
    """
    from huggingface_hub import ModelCardData

    adapter = not merged and (view.run_dir / "model" / "adapter_config.json").is_file()
    base = _base_model(view)
    method = (view.config.get("method") or {}).get("name", "full")
    card = ModelCardData(
        base_model=base,
        library_name="peft" if adapter else "transformers",
        pipeline_tag=PIPELINE_TAGS.get(view.task),
        tags=["tunesmith", method, view.task, *(["lora"] if method == "dora" else []), *(["merged"] if merged else [])],
        license="unknown",
    )
    return f"---\n{card.to_yaml()}\n---\n\n{_markdown(view, base, adapter)}"


def _markdown(view: RunView, base: str | None, adapter: bool) -> str:
    header, rows = metric_table(view)
    lines = [
        f"# {view.record.get('name') or view.id}",
        "",
        f"Fine-tuned from `{base or view.record.get('model', {}).get('name', '?')}` with "
        f"tunesmith ({'an adapter' if adapter else 'full weights'}).",
        "",
        "## Training",
        "",
        *_table(["", ""], [list(row) for row in overview(view)]),
        "",
        "## Data",
        "",
        "Trained on local files (not on the hub):",
        "",
        *_table(["", ""], [list(row) for row in data_rows(view)]),
        "",
        "## Evaluation",
        "",
        *(_table(header, rows) if rows else ["No evaluation recorded."]),
        "",
        "## Use",
        "",
        "```python",
        *_usage(view, adapter),
        "```",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(view.config, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _usage(view: RunView, adapter: bool) -> list[str]:
    classes = {"causal_lm": "CausalLM", "seq2seq": "Seq2SeqLM", "classification": "SequenceClassification"}
    suffix = classes.get(view.task, "CausalLM")
    if adapter:
        return [
            f"from peft import AutoPeftModelFor{suffix}",
            f'model = AutoPeftModelFor{suffix}.from_pretrained("PATH")',
        ]
    return [f"from transformers import AutoModelFor{suffix}", f'model = AutoModelFor{suffix}.from_pretrained("PATH")']


def _base_model(view: RunView) -> str | None:
    # The hub wants a hub id here; a local directory or .gguf file is named in the text instead.
    model = view.record.get("model") or {}
    name = str(model.get("name") or (view.config.get("model") or {}).get("name") or "")
    if name in EMBEDDED_HUB_IDS:
        return EMBEDDED_HUB_IDS[name]
    return name if model.get("source") == "hub" else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
