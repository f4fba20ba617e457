"""`tunesmith serve` as a user runs it: a subprocess answering the openai client, stopped by a signal."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from serving import free_port


def _cli(*args: str, key: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "TUNESMITH_API_KEY"} | {"HF_HUB_OFFLINE": "1"}
    if key:
        env["TUNESMITH_API_KEY"] = key
    command = [sys.executable, "-m", "tunesmith.cli", "serve", *args]
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_another_address_without_a_key_is_refused_in_one_line(lora_runs: tuple[Path, Path]) -> None:
    process = _cli(str(lora_runs[0]), "--host", "0.0.0.0")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        "error: --host 0.0.0.0: serving beyond this machine needs an API key "
        "(pass --api-key KEY or set TUNESMITH_API_KEY)"
    ]


def test_cli_serves_two_runs_to_the_openai_client(lora_runs: tuple[Path, Path]) -> None:
    port = free_port()
    process = _cli(*map(str, lora_runs), "--port", str(port), key="cli-key")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "tunesmith serve did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="cli-key", max_retries=0, timeout=60)
        assert {m.id for m in client.models.list().data} >= {p.name for p in lora_runs}
        reply = client.chat.completions.create(
            model=lora_runs[1].name, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert f"serving on http://127.0.0.1:{port}/v1 (API key required)" in stderr


@pytest.mark.parametrize(
    ("engine", "line"),
    [
        ("onnx", "error: --engine onnx: unknown engine (use builtin, vllm or llama.cpp)"),
        ("vllm", "error: --engine vllm: vLLM is not installed (pip install vllm, on a CUDA machine)"),
        ("llama.cpp", "error: --engine llama.cpp: llama-cpp-python's server is not installed "
         "(pip install 'llama-cpp-python[server]')"),
    ],
)  # fmt: skip
def test_an_engine_that_cannot_run_here_is_refused_in_one_line(
    lora_runs: tuple[Path, Path], engine: str, line: str
) -> None:
    # Neither vLLM nor llama-cpp-python is installed in the test environment.
    for package in ("vllm", "llama_cpp"):
        if engine.startswith(package.split("_")[0]) and importlib.util.find_spec(package) is not None:
            pytest.skip(f"{package} is installed here")
    process = _cli(str(lora_runs[0]), "--engine", engine)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [line]
