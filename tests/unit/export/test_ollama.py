"""--to ollama: the GGUF plus a Modelfile whose TEMPLATE renders what the run's chat template renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_checks import SYSTEM

from tunesmith.export import export_run
from tunesmith.export.modelfile import CHATML_TEMPLATE, PLAIN_TEMPLATE, modelfile_text, ollama_template

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_STYLE = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def test_ollama_folder_names_the_gguf_template_system_and_stops(tiny_run: Path, tmp_path: Path) -> None:
    result = export_run(tiny_run, "ollama", "q4_0", output=tmp_path / "ollama")
    assert sorted(p.name for p in result.files) == ["Modelfile", "export.json", "tiny-q4_0.gguf"]
    text = (tmp_path / "ollama" / "Modelfile").read_text()
    assert "FROM ./tiny-q4_0.gguf\n" in text
    assert f'TEMPLATE """{CHATML_TEMPLATE}"""' in text
    assert f'SYSTEM """{SYSTEM}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    assert result.command == f"ollama create tiny -f {tmp_path / 'ollama' / 'Modelfile'}"
    assert result.notes == []


def test_a_template_default_system_prompt_is_kept(tmp_path: Path) -> None:
    from fixtures import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    converted = ollama_template(tokenizer, None)
    assert converted.template == CHATML_TEMPLATE
    assert converted.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert ollama_template(tokenizer, "Be brief.").system == "Be brief."  # data.system wins


def test_an_unconvertible_template_is_said_not_guessed() -> None:
    from fixtures import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.chat_template = LLAMA3_STYLE
    converted = ollama_template(tokenizer, SYSTEM)
    assert converted.template is None and converted.problem and "not ChatML-style" in converted.problem
    text = modelfile_text("m.gguf", converted)
    assert 'TEMPLATE """' not in text and "# TEMPLATE not written: the run's chat template is not ChatML" in text
    assert f'SYSTEM """{SYSTEM}"""' in text and 'PARAMETER stop "<|im_end|>"' in text


@pytest.mark.parametrize("system", [None, "Sys."])
def test_a_run_without_chat_template_gets_the_plain_prompt_layout(system: str | None) -> None:
    from fixtures import build_tokenizer

    converted = ollama_template(build_tokenizer(chat_template=False), system)
    assert (converted.template, converted.system, converted.stops) == (PLAIN_TEMPLATE, system, ["<|im_end|>"])
    # A run trained with data.chat_template: off read plain prompts even though its tokenizer has a template.
    assert ollama_template(build_tokenizer(), system, chat=False).template == PLAIN_TEMPLATE


def test_the_cli_prints_the_files_and_the_ollama_create_line(tiny_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    out = tmp_path / "o"
    done = CliRunner().invoke(app, ["export", str(tiny_run), "--to", "ollama", "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert f"wrote {out / 'tiny-q8_0.gguf'} (" in done.output and f"wrote {out / 'Modelfile'} (" in done.output
    assert f"next: ollama create tiny -f {out / 'Modelfile'}" in done.output
