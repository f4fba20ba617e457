"""Pick the numeric precision: bf16 autocast where the hardware does it fast, fp32 elsewhere."""

from __future__ import annotations

from pathlib import Path

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
