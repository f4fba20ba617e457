"""--to gguf: files transformers (and llama.cpp) load, with logits that match the merged model per quant type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from export_checks import PROMPTS, TOLERANCES, logit_gap

from tunesmith.errors import TunesmithError
from tunesmith.export import export_run


def _load_gguf(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.parametrize("quant", ["f16", "bf16", "q8_0", "q4_0"])
def test_gguf_round_trips_through_transformers(
    quant: str, tiny_run: Path, tiny_reference: tuple[Any, Any], tmp_path: Path
) -> None:
    reference, tokenizer = tiny_reference
    result = export_run(tiny_run, "gguf", quant, output=tmp_path / "gguf")
    (path,) = [p for p in result.files if p.suffix == ".gguf"]
    assert path.name == f"tiny-{quant}.gguf"
    model, gguf_tokenizer = _load_gguf(path)

    texts = [gguf_tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False) for p in PROMPTS]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in [*PROMPTS, *texts]]
    assert [gguf_tokenizer(t, add_special_tokens=False)["input_ids"] for t in [*PROMPTS, *texts]] == ids
    assert gguf_tokenizer.chat_template == tokenizer.chat_template
    assert (gguf_tokenizer.bos_token, gguf_tokenizer.eos_token) == (tokenizer.bos_token, tokenizer.eos_token)

    relative, top1 = logit_gap(reference, model, ids)
    print(f"{quant}: max |diff| / max |logit| {relative:.2e}, top-1 agreement {top1:.3f}, {path.stat().st_size} B")
    max_relative, min_top1 = TOLERANCES[quant]
    assert relative <= max_relative and top1 >= min_top1


def test_gguf_metadata_follows_llama_cpp(tiny_run: Path, tmp_path: Path) -> None:
    import gguf

    result = export_run(tiny_run, "gguf", "q8_0", output=tmp_path / "gguf")
    reader = gguf.GGUFReader(next(p for p in result.files if p.suffix == ".gguf"))

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    assert field("general.architecture") == "llama" and field("general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    assert (
        field("llama.block_count"),
        field("llama.attention.head_count_kv"),
        field("llama.rope.dimension_count"),
    ) == (
        2,
        2,
        8,
    )
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "gpt-2"
    assert field("tokenizer.ggml.add_bos_token") is False
    assert field("tokenizer.ggml.tokens")[:5] == ["<pad>", "<unk>", "<s>", "<|im_end|>", "<|im_start|>"]
    assert field("tokenizer.ggml.token_type")[:6] == [3, 3, 3, 3, 3, 1]  # specials are CONTROL
    assert (field("tokenizer.ggml.eos_token_id"), field("tokenizer.ggml.padding_token_id")) == (3, 0)
    assert "<|im_start|>" in field("tokenizer.chat_template")
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"


def _tiny(kind: str) -> Any:
    import torch
    import transformers

    from fixtures import build_tokenizer

    vocab = len(build_tokenizer())
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    if kind == "qwen2":  # q/k/v biases, untied output layer
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, tie_word_embeddings=False))
    if kind == "qwen3":  # per-head q/k norms; head_dim 128 as in every Qwen3 (transformers' GGUF reader assumes it)
        qwen3 = common | {"hidden_size": 256, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 128}
        return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**qwen3))
    if kind == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(**common, head_dim=8, sliding_window=None))
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=1, n_head=4))


@pytest.mark.parametrize(("kind", "arch"), [("qwen2", "qwen2"), ("qwen3", "qwen3"), ("mistral", "llama")])
def test_other_llama_family_architectures_round_trip(kind: str, arch: str, tmp_path: Path) -> None:
    import gguf
    import torch

    from fixtures import build_tokenizer
    from tunesmith.export.gguf_file import write_gguf

    model = _tiny(kind).eval()
    with torch.no_grad():  # random init is near zero; spread the weights so a misplaced tensor shows in the logits
        for param in model.parameters():
            param.mul_(10.0 if param.dim() > 1 else 1.0)
    path = tmp_path / f"{kind}.gguf"
    write_gguf(model, build_tokenizer(), path, "f16", f"tiny-{kind}")
    assert gguf.GGUFReader(path).fields["general.architecture"].contents() == arch
    loaded, _ = _load_gguf(path)
    ids = [[5, 17, 42, 99, 7, 3], [8, 9, 10]]
    relative, top1 = logit_gap(model, loaded, ids)
    assert relative <= TOLERANCES["f16"][0] and top1 >= TOLERANCES["f16"][1], (relative, top1)


def test_unhandled_architecture_is_one_clear_line_and_no_file(tmp_path: Path) -> None:
    from fixtures import build_tokenizer
    from tunesmith.export.gguf_file import write_gguf

    with pytest.raises(TunesmithError, match="the GGUF writer does not handle the GPT2LMHeadModel architecture"):
        write_gguf(_tiny("gpt2"), build_tokenizer(), tmp_path / "x.gguf", "q8_0", "x")
    assert list(tmp_path.iterdir()) == []


def test_rope_scaling_and_non_byte_level_tokenizers_are_refused(tmp_path: Path) -> None:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    from fixtures import build_tokenizer
    from tunesmith.export.gguf_file import write_gguf

    scaled = transformers.LlamaConfig(
        vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    scaled.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    with pytest.raises(TunesmithError, match="rope scaling 'linear' of LlamaForCausalLM is not handled"):
        write_gguf(transformers.LlamaForCausalLM(scaled), build_tokenizer(), tmp_path / "x.gguf", "f16", "x")

    words = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level = transformers.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>")
    with pytest.raises(TunesmithError, match="handles byte-level BPE tokenizers .*; this one is WordLevel"):
        write_gguf(_tiny("qwen2"), word_level, tmp_path / "x.gguf", "f16", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    from fixtures import build_tokenizer
    from tunesmith.export.gguf_file import write_gguf

    model = _tiny("qwen2")
    model.model.register_buffer("extra_scale", __import__("torch").ones(3))  # a tensor the writer cannot place
    with pytest.raises(TunesmithError, match="tensors the GGUF writer does not map: model.extra_scale"):
        write_gguf(model, build_tokenizer(), tmp_path / "x.gguf", "f16", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_non_causal_run_gets_one_line_from_the_cli(tmp_path: Path, tiny_run: Path) -> None:
    import os
    import subprocess
    import sys

    import yaml

    # A copy of the run that says it is a classification run: the check happens before any model is loaded.
    clone = tmp_path / "clf-run"
    clone.mkdir()
    config = yaml.safe_load((tiny_run / "config.yaml").read_text()) | {"task": "classification"}
    config["data"] = {"train": config["data"]["train"], "text": "{product}", "label": "audience"}
    (clone / "config.yaml").write_text(yaml.safe_dump(config))
    (clone / "run.json").write_text((tiny_run / "run.json").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "export", str(clone), "--to", "gguf"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --to gguf: GGUF is for causal language models; {clone} is a classification run "
        "(--to merged works for it)"
    ]


def test_llama_cpp_loads_the_file_and_agrees(tiny_run: Path, tiny_reference: tuple[Any, Any], tmp_path: Path) -> None:
    """The real consumer. llama-cpp-python builds from source (minutes): this runs only where it is installed."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np

    reference, tokenizer = tiny_reference
    result = export_run(tiny_run, "gguf", "q8_0", output=tmp_path / "gguf")
    path = next(p for p in result.files if p.suffix == ".gguf")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False)
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)])

    class Scores:  # llama.cpp's logits, in the shape logit_gap reads
        def __call__(self, batch: Any) -> Any:
            import torch

            return type("Out", (), {"logits": torch.from_numpy(got).unsqueeze(0)})()

    relative, top1 = logit_gap(reference, Scores(), [ids])
    assert relative <= TOLERANCES["q8_0"][0] and top1 >= TOLERANCES["q8_0"][1], (relative, top1)
