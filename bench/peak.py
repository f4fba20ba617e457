"""Matmul peak of this machine: the best rate of a square torch.matmul in bf16 and fp32 (run as a subprocess)."""

from __future__ import annotations

import argparse
import json
import time

import torch

from tunesmith.models.precision import cpu_supports_bf16

PEAK_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def matmul_flops(dtype: torch.dtype, size: int, seconds: float) -> float:
    """Best FLOP/s over repeated ``size`` x ``size`` matmuls within about ``seconds``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main() -> None:
    """Print one JSON line: the bf16 and fp32 peaks in FLOP/s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    # Without bf16 instructions (avx512_bf16/amx) a bf16 matmul is emulated and one 2048^3 product takes
    # minutes: there is no bf16 peak to measure, and MFU is then against the fp32 peak only.
    dtypes = {n: d for n, d in PEAK_DTYPES.items() if n != "bf16" or torch.cuda.is_available() or cpu_supports_bf16()}
    peaks = {name: matmul_flops(dtype, args.size, args.seconds) for name, dtype in dtypes.items()}
    print(json.dumps({"size": args.size, "threads": torch.get_num_threads(), **peaks}), flush=True)


if __name__ == "__main__":
    main()
