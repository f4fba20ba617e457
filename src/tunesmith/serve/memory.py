"""How much memory a model's weights need once loaded (fp32), against what the machine has free."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from tunesmith.errors import TunesmithError

_FP32_BYTES = 4
# Activations, the KV cache and the allocator's slack come on top of the weights.
_HEADROOM = 1.15


def safetensors_parameters(path: Path) -> int:
    """The number of parameters in one safetensors file, read from its JSON header (no tensor is loaded)."""
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")


def weights_bytes(model_dir: Path) -> int:
    """Bytes the weights in ``model_dir`` take as fp32 tensors (tunesmith loads fp32 master weights)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return sum(safetensors_parameters(f) for f in files) * _FP32_BYTES
    # Without safetensors the file sizes are the best estimate we have (fp16 files load twice as large).
    return sum(f.stat().st_size for f in model_dir.glob("*.bin")) * 2


def available_bytes() -> int:
    """Memory the OS can give us now without swapping."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(what: str, model_dir: Path, available: int | None = None) -> int:
    """Raise a one-line error naming ``what`` when its weights do not fit in free memory; return their size."""
    needed = weights_bytes(model_dir)
    free = available_bytes() if available is None else available
    if needed * _HEADROOM > free:
        raise TunesmithError(
            f"{what}: its weights need about {_gib(needed * _HEADROOM)} GiB loaded, only {_gib(free)} GiB is free",
            hint="serve fewer runs at once, or adapter runs of a base that is already loaded",
        )
    return needed


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f}"
