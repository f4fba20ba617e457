"""Safe defaults: local address unless a key is set, free port checked early, memory checked before loading."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.serve.memory import check_fits, weights_bytes
from tunesmith.serve.server import check_bind


def test_other_addresses_need_an_api_key() -> None:
    with pytest.raises(TunesmithError, match=r"--host 0\.0\.0\.0: serving beyond this machine needs an API key"):
        check_bind("0.0.0.0", 8000, None)


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TunesmithError, match=f"--port {port}: cannot listen on 127.0.0.1:{port}"):
            check_bind("127.0.0.1", port, None)


def test_memory_check_counts_fp32_parameters_and_names_the_run(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    parameters = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_llama).parameters())
    assert weights_bytes(tiny_llama) == parameters * 4
    assert check_fits("run runs/x", tiny_llama, available=10 * 2**30) == parameters * 4
    with pytest.raises(TunesmithError, match=r"^run runs/x: its weights need about 0\.00 GiB loaded, only"):
        check_fits("run runs/x", tiny_llama, available=parameters)
