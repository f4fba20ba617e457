"""Tiny models and an offline tokenizer, built in a few milliseconds, for fast deterministic tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Write an ad for coffee aimed at students.",
    "Hey students! Our coffee makes your mornings brighter. Grab a cup today!",
    "Summarize: the customer asked for a refund and the agent approved it.",
    "The quick brown fox jumps over the lazy dog 0123456789 ,.!?;:'\"()-",
    "great product, terrible delivery, would buy again. positive negative",
]


def build_tokenizer(chat_template: bool = True) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "<|im_end|>", "<|im_start|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>"
    )
    if chat_template:
        fast.chat_template = CHATML
    return fast


def build_llama(path: Path, chat_template: bool = True, seed: int = 0, tie_embeddings: bool = True) -> Path:
    """Save a 2-layer Llama-style causal LM (hidden 32) and its tokenizer to ``path``.

    With tied embeddings a random model's greedy answer repeats the prompt's last token (a chat template's
    newline: an empty answer); untied, it answers with visible gibberish, which a chat test can follow.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_t5(path: Path, seed: int = 0) -> Path:
    """Save a 2-layer T5 (d_model 32) and the offline tokenizer to ``path``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_tokenizer(chat_template=False)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_bert(path: Path, seed: int = 0) -> Path:
    """Save a 2-layer BERT encoder (hidden 32) and the offline tokenizer to ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = build_tokenizer(chat_template=False)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


ADS = [
    ("coffee", "students", "Hey students! Our coffee keeps you sharp through every lecture. Grab a cup today!"),
    ("shoes", "runners", "Run farther on clouds. Our new shoes cushion every stride. Lace up now!"),
    ("laptop", "gamers", "Frames for days: this laptop never blinks. Level up today!"),
    ("tea", "retirees", "Slow mornings deserve great tea. Steep a pot of calm. Order a tin!"),
    ("bike", "commuters", "Beat the traffic on two wheels. Ride to work with a grin. Test ride free!"),
    ("lamp", "students", "Late-night study, sorted: a lamp that is kind to tired eyes. Shop now!"),
    ("desk", "remote workers", "Stand up for your back. Our desk rises with a tap. Upgrade your office!"),
    ("watch", "runners", "Every split, every heartbeat, on your wrist. Start your streak today!"),
]


def write_ads_csv(path: Path, repeat: int = 3) -> Path:
    """A small ad-copy table: product, audience, ad_text."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["product", "audience", "ad_text"])
        for _ in range(repeat):
            writer.writerows(ADS)
    return path


def write_config(path: Path, model_dir: Path, table: Path, **sections: dict[str, Any]) -> Path:
    """A causal-LM config for the tiny model; ``sections`` override whole keys per section."""
    import yaml

    config: dict[str, Any] = {
        "name": "tiny",
        "model": {"name": str(model_dir)},
        "data": {
            "train": str(table),
            "prompt": "Write an ad for {product} aimed at {audience}.",
            "response": "{ad_text}",
            "max_length": 256,
            "eval_fraction": 0.25,
        },
        "method": {"name": "lora", "r": 4, "alpha": 8},
        "train": {"max_steps": 4, "batch_size": 4, "logging_steps": 1, "save_steps": 2, "learning_rate": 1e-3},
        "eval": {"max_new_tokens": 8},
    }
    for section, values in sections.items():
        if isinstance(config.get(section), dict) and isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    path.write_text(yaml.safe_dump(config))
    return path


def train_into(root: Path, config: Path, overrides: list[str] | None = None) -> Path:
    """Train ``config`` into ``root/runs`` with its own tokenised-data cache in ``root/cache``; the run directory.

    For module- and session-scoped fixtures: they run before the per-test private cache fixture is active.
    """
    import pytest

    from tunesmith.config import load_config
    from tunesmith.train.runner import train

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_CACHE", str(root / "cache"))
        return train(load_config(config, overrides or []), output_dir=root / "runs").run_dir
