"""Pick the numeric precision: bf16 autocast where the hardware does it fast, fp32 elsewhere."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.config import Precision


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(requested: Precision) -> tuple[str, str]:
    """(precision, reason): ``auto`` becomes bf16 on capable hardware, fp32 elsewhere."""
    import torch

    if requested != "auto":
        return requested, "set in the config"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16", f"auto: {torch.cuda.get_device_name()} supports bf16"
        return "fp32", "auto: this GPU has no bf16"
    if cpu_supports_bf16():
        return "bf16", "auto: the CPU has AVX512-BF16/AMX"
    return "fp32", "auto: the CPU has no native bf16"


def cast_frozen_weights(model: Any) -> int:
    """Store frozen weights in bf16; returns how many tensors changed.

    Under bf16 autocast every matmul reads its weight in bf16 anyway, so a frozen fp32 weight costs a
    conversion on every forward and backward (a quarter of a LoRA step on CPU) and twice the memory. The
    trainable adapter weights stay fp32: they are the ones the optimizer updates.
    """
    import torch

    changed = 0
    for parameter in model.parameters():
        if not parameter.requires_grad and parameter.dtype == torch.float32:
            parameter.data = parameter.data.to(torch.bfloat16)
            changed += 1
    return changed


@contextlib.contextmanager
def autocast(precision: str) -> Iterator[None]:
    """Run the block in the run's precision: bf16 autocast for bf16 runs, as trained; otherwise as loaded."""
    import torch

    if precision == "bf16":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.autocast(device, dtype=torch.bfloat16):
            yield
    else:
        yield
