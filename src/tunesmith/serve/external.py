"""``tunesmith serve --engine vllm|llama.cpp``: the runs behind those projects' own OpenAI-compatible servers.

vLLM (on a CUDA machine) serves the runs' base with each LoRA run as a named adapter (``--enable-lora``,
one ``--lora-modules NAME=PATH`` per run). llama-cpp-python's server serves one run exported to GGUF with
``tunesmith export RUN --to gguf``. Each is refused in one line where it cannot run; the built-in engine
(``--engine builtin``, the default) is the embedded one.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.rundir import read_run

ENGINES = ("builtin", "vllm", "llama.cpp")


def check_engine(engine: str) -> None:
    """Refuse an unknown ``--engine`` name in one line."""
    if engine not in ENGINES:
        raise TunesmithError(f"--engine {engine}: unknown engine", hint="use builtin, vllm or llama.cpp")


def external_command(engine: str, run_dirs: list[Path], host: str, port: int, api_key: str | None) -> list[str]:
    """The command line that serves ``run_dirs`` with ``engine`` (vllm or llama.cpp), or one clear error."""
    if not run_dirs:
        raise TunesmithError("serve: give at least one RUN_DIR")
    command = _vllm(run_dirs, host, port) if engine == "vllm" else _llama_cpp(run_dirs, host, port)
    if api_key:
        command += ["--api-key" if engine == "vllm" else "--api_key", api_key]
    return command


def run_external(command: list[str]) -> None:
    """Run the external server in the foreground until it exits (or is interrupted)."""
    try:
        returncode = subprocess.call(command)
    except KeyboardInterrupt:
        return
    if returncode:
        raise TunesmithError(f"--engine: the server exited with status {returncode}: {' '.join(command[:4])} ...")


def _vllm(run_dirs: list[Path], host: str, port: int) -> list[str]:
    if importlib.util.find_spec("vllm") is None:
        raise TunesmithError("--engine vllm: vLLM is not installed", hint="pip install vllm, on a CUDA machine")
    import torch

    if not torch.cuda.is_available():
        raise TunesmithError("--engine vllm: vLLM needs a CUDA GPU and this machine has none", hint="--engine builtin")
    from tunesmith.models.resolve import resolve_model

    bases, modules = set(), []
    for run_dir in run_dirs:
        config, _ = read_run(run_dir)
        if not (run_dir / "model" / "adapter_config.json").is_file() or config.method.name != "lora":
            raise TunesmithError(f"--engine vllm: {run_dir} is not a LoRA run", hint="vLLM serves LoRA adapters")
        bases.add((config.model.name, config.model.revision))
        modules.append(f"{run_dir.resolve().name}={run_dir / 'model'}")
    if len(bases) > 1:
        raise TunesmithError("--engine vllm: the runs were tuned from different bases", hint="serve one base at once")
    name, revision = next(iter(bases))
    base = resolve_model(name, revision).location
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base), "--enable-lora"]
    return [*command, "--lora-modules", *modules, "--host", host, "--port", str(port)]


def _llama_cpp(run_dirs: list[Path], host: str, port: int) -> list[str]:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise TunesmithError(
            "--engine llama.cpp: llama-cpp-python's server is not installed",
            hint="pip install 'llama-cpp-python[server]'",
        )
    if len(run_dirs) != 1:
        raise TunesmithError("--engine llama.cpp: serves one run at a time", hint="give one RUN_DIR")
    run_dir = run_dirs[0]
    found = sorted((run_dir / "export").glob("gguf*/*.gguf")) if (run_dir / "export").is_dir() else []
    if not found:
        raise TunesmithError(
            f"--engine llama.cpp: {run_dir} has no GGUF export", hint=f"run: tunesmith export {run_dir} --to gguf"
        )
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(found[0]), "--host", host, "--port", str(port)]
