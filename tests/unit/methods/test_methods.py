"""Every method on a tiny model: forward, backward, what trains, save/load round-trip."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from tunesmith.config import METHOD_CONFIGS, FreezeMethod, LoraMethod
from tunesmith.errors import TunesmithError
from tunesmith.methods import METHODS, apply_method, parameter_counts


def llama(path: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def test_every_configurable_method_is_implemented_once_and_vice_versa() -> None:
    assert set(METHODS) == set(METHOD_CONFIGS)
    for name, spec in METHODS.items():
        assert METHOD_CONFIGS[name] is spec.settings  # registered against the class the config validates with


# peft 0.21 prefix tuning still hands transformers `past_key_values`, deprecated for removal in 5.40: known,
# upstream, and the reason this one case is allowed to warn. When transformers drops it, this test fails first.
PREFIX_WARNS = pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")
METHOD_CASES = [pytest.param(n, marks=PREFIX_WARNS) if n == "prefix_tuning" else n for n in sorted(METHOD_CONFIGS)]


@pytest.mark.parametrize("name", METHOD_CASES)
def test_method_trains_a_subset_and_backpropagates(tiny_llama: Path, name: str) -> None:
    model = apply_method(llama(tiny_llama), METHOD_CONFIGS[name](), "causal_lm")
    trainable, total = parameter_counts(model)
    assert 0 < trainable <= total
    if name != "full":
        assert trainable < total
    ids = torch.tensor([[5, 17, 33, 41, 8, 9]])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_freeze_first_layers_and_embeddings(tiny_llama: Path) -> None:
    model = apply_method(llama(tiny_llama), FreezeMethod(layers=1, embeddings=True), "causal_lm")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "model.embed_tokens.weight" in frozen
    assert any(n.startswith("model.layers.0.") for n in frozen)
    assert not any(n.startswith("model.layers.1.") for n in frozen)


def test_freeze_by_regex_and_module_name(tiny_llama: Path) -> None:
    cfg = FreezeMethod(embeddings=False, regex=r"mlp\.down_proj", modules=["self_attn.q_proj"])
    model = apply_method(llama(tiny_llama), cfg, "causal_lm")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"model.layers.{i}.{m}.weight" for i in (0, 1) for m in ("mlp.down_proj", "self_attn.q_proj")}


def test_freeze_everything_is_an_error(tiny_llama: Path) -> None:
    with pytest.raises(TunesmithError, match="no trainable parameters"):
        apply_method(llama(tiny_llama), FreezeMethod(regex="."), "causal_lm")


def test_bad_regex_names_the_key(tiny_llama: Path) -> None:
    with pytest.raises(TunesmithError, match=r"method.regex: invalid regular expression"):
        apply_method(llama(tiny_llama), FreezeMethod(regex="("), "causal_lm")


def test_freeze_encoder_of_t5(tiny_t5: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    model = apply_method(model, FreezeMethod(encoder=True, embeddings=False), "seq2seq")
    encoder = {id(p) for p in model.get_encoder().parameters()}
    for parameter in model.parameters():
        # T5 shares its embedding between encoder and decoder, so it is frozen with the encoder.
        assert parameter.requires_grad == (id(parameter) not in encoder)


def test_freeze_encoder_on_decoder_only_is_an_error(tiny_llama: Path) -> None:
    with pytest.raises(TunesmithError, match="method.encoder: this model has no separate encoder"):
        apply_method(llama(tiny_llama), FreezeMethod(encoder=True), "causal_lm")


def test_lora_round_trip_and_merged_equals_unmerged(tiny_llama: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    torch.manual_seed(0)
    model = apply_method(llama(tiny_llama), LoraMethod(r=4, alpha=8, dropout=0.0), "causal_lm")
    with torch.no_grad():  # LoRA's B starts at zero; give the adapter a real effect.
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    model.eval()
    ids = torch.tensor([[5, 17, 33, 41, 8, 9]])
    adapted = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")

    reloaded = PeftModel.from_pretrained(llama(tiny_llama), tmp_path / "adapter").eval()
    torch.testing.assert_close(reloaded(input_ids=ids).logits, adapted)
    merged = reloaded.merge_and_unload()
    torch.testing.assert_close(merged(input_ids=ids).logits, adapted, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(llama(tiny_llama)(input_ids=ids).logits, adapted)
