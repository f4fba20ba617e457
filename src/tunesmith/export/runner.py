"""``tunesmith export``: a run's model as merged safetensors, a GGUF file, or an Ollama folder.

Life cycle: check the request -> load the run -> fold the adapter in (fp32) -> write into a private staging
folder -> rename it into place. A failed export therefore leaves nothing behind, and an existing folder is only
replaced when an earlier ``tunesmith export`` wrote it (it holds ``export.json``).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.rundir import now_iso, read_run

if TYPE_CHECKING:
    from tunesmith.models.run_model import LoadedRun

KINDS = ("merged", "gguf", "ollama")
DEFAULT_QUANT = "q8_0"
MARKER = "export.json"


@dataclass
class ExportResult:
    """What an export wrote."""

    kind: str
    output: Path
    files: list[Path]
    quant: str | None = None
    notes: list[str] = field(default_factory=list)
    command: str | None = None  # the line to run next (ollama create ...)


def export_run(run_dir: Path, to: str, quant: str | None = None, output: Path | None = None) -> ExportResult:
    """Export the model of the completed run in ``run_dir`` as ``to`` (merged, gguf or ollama)."""
    config, _ = read_run(run_dir)
    quant = _check_request(config, run_dir, to, quant)
    _check_target(_target(run_dir, to, quant, output))  # fail before the (slow) model load
    from tunesmith.models.run_model import load_run_model

    return export_loaded(load_run_model(run_dir), to, quant, output)


def export_loaded(run: LoadedRun, to: str, quant: str | None = None, output: Path | None = None) -> ExportResult:
    """Export an already loaded run. An adapter is folded into ``run.model`` in place (fp32)."""
    quant = _check_request(run.config, run.run_dir, to, quant)
    target = _target(run.run_dir, to, quant, output)
    _check_target(target)
    model = run.model.merge_and_unload() if run.adapter else run.model
    if to != "merged":
        from tunesmith.export.gguf_file import architecture_of

        architecture_of(model)  # refuse before anything is written
    result = ExportResult(to, target, [], quant)
    with _staging(target) as folder:
        if to == "merged":
            _write_merged(run.run_dir, model, run.tokenizer, folder)
        else:
            _write_gguf(run.config, model, run.tokenizer, folder, quant or DEFAULT_QUANT, result)
        _write_marker(folder, run.run_dir, result)
    result.files = sorted(path for path in target.iterdir() if path.is_file())
    if to == "ollama":
        result.command = f"ollama create {safe_name(run.config.name)} -f {target / 'Modelfile'}"
    return result


def _target(run_dir: Path, to: str, quant: str | None, output: Path | None) -> Path:
    return (output or default_output(run_dir, to, quant)).absolute()


def default_output(run_dir: Path, to: str, quant: str | None) -> Path:
    """RUN_DIR/export/merged, RUN_DIR/export/gguf-q8_0, RUN_DIR/export/ollama-q4_0 ..."""
    return run_dir / "export" / (to if to == "merged" else f"{to}-{quant}")


def _check_request(config: RunConfig, run_dir: Path, to: str, quant: str | None) -> str | None:
    from tunesmith.export.gguf_file import QUANTS

    if to not in KINDS:
        raise TunesmithError(f"--to {to!r}: choose one of {', '.join(KINDS)}")
    if to == "merged":
        if quant is not None:
            raise TunesmithError("--quant applies to --to gguf and --to ollama; merged weights are saved in fp32")
        return None
    from tunesmith.data.forms import form_for

    if not form_for(config).decoder_only:
        raise TunesmithError(
            f"--to {to}: GGUF is for causal language models; {run_dir} is a {config.task} run",
            hint="--to merged works for it",
        )
    quant = quant or DEFAULT_QUANT
    if quant not in QUANTS:
        raise TunesmithError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    return quant


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise TunesmithError(f"--output {target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise TunesmithError(
            f"--output {target}: the folder is not empty and was not written by tunesmith export; not overwriting it",
            hint="choose an empty or new folder",
        )


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A private folder beside ``target`` that replaces it on success and disappears on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)  # an earlier export (checked by _check_target)
    folder.rename(target)


def _write_merged(run_dir: Path, model: Any, tokenizer: Any, folder: Path) -> None:
    from tunesmith.rundir import atomic_write
    from tunesmith.track.model_card import model_card
    from tunesmith.track.runview import load_run

    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    atomic_write(folder / "README.md", model_card(load_run(run_dir), merged=True))


def _write_gguf(config: RunConfig, model: Any, tokenizer: Any, folder: Path, quant: str, result: ExportResult) -> None:
    from tunesmith.export.gguf_file import write_gguf

    name = safe_name(config.name)
    gguf_path = folder / f"{name}-{quant}.gguf"
    write_gguf(model, tokenizer, gguf_path, quant, config.name, _trained_chat_template(tokenizer, config))
    if result.kind != "ollama":
        return
    from tunesmith.data.forms import form_for
    from tunesmith.data.tokenize import uses_chat_template
    from tunesmith.export.modelfile import modelfile_text, ollama_template
    from tunesmith.rundir import atomic_write

    chat = uses_chat_template(tokenizer, config.data)
    tools = form_for(config).turns and not _native_tools(tokenizer, config)
    converted = ollama_template(tokenizer, config.data.system, chat, tools=tools)
    atomic_write(folder / "Modelfile", modelfile_text(gguf_path.name, converted))
    if converted.problem:
        result.notes.append(converted.problem)


def _trained_chat_template(tokenizer: Any, config: RunConfig) -> str | None:
    """The template a conversation run in the fallback tool format was trained with; None: the tokenizer's."""
    from tunesmith.data.chat_format import PLAIN_CHAT_TEMPLATE
    from tunesmith.data.forms import form_for
    from tunesmith.data.tokenize import uses_chat_template
    from tunesmith.export.chat_template import fallback_chat_template

    if not form_for(config).turns or _native_tools(tokenizer, config):
        return None
    own = tokenizer.chat_template if uses_chat_template(tokenizer, config.data) else PLAIN_CHAT_TEMPLATE
    return fallback_chat_template(own)


def _native_tools(tokenizer: Any, config: RunConfig) -> bool:
    """Whether a conversation run's template had its own tool format (then the GGUF's template carries it)."""
    from tunesmith.data.turns import conversation_renderer

    return conversation_renderer(tokenizer, config.data).native_tools


def safe_name(name: str) -> str:
    """A file and Ollama model name: lower case letters, digits, dot, dash and underscore."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return cleaned or "model"


def _write_marker(folder: Path, run_dir: Path, result: ExportResult) -> None:
    from tunesmith.rundir import atomic_write

    files = {path.name: path.stat().st_size for path in sorted(folder.iterdir()) if path.is_file()}
    marker = {
        "kind": result.kind,
        "quant": result.quant,
        "run_dir": str(run_dir.absolute()),
        "written_at": now_iso(),
        "files": files,
        "notes": result.notes,
    }
    atomic_write(folder / MARKER, json.dumps(marker, indent=2) + "\n")
