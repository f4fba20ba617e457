"""Several processes, GPUs or machines through the standard engines: torchrun + DDP, FSDP or DeepSpeed.

tunesmith does not implement any of it: the launcher starts ``torch.distributed.run`` (torchrun), and the
Hugging Face Trainer (through Accelerate) sets up DDP, FSDP or DeepSpeed from the environment it gets.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError


def world_size() -> int:
    """Processes in this run (1 unless started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 alone writes the run directory, logs and the final model."""
    return os.environ.get("RANK", "0") == "0"


def global_batch(cfg: RunConfig) -> dict[str, int]:
    """Rows per optimizer step: per-device batch x processes x accumulation."""
    processes = world_size()
    per_device, accumulation = cfg.train.batch_size, cfg.train.grad_accum
    return {
        "per_device": per_device,
        "processes": processes,
        "accumulation": accumulation,
        "global": per_device * processes * accumulation,
    }


def check_engine(cfg: RunConfig) -> None:
    """One clear line, before anything starts, for engine combinations that cannot run here."""
    import torch

    engine = cfg.train.distributed
    if engine == "fsdp" and not torch.cuda.is_available():
        raise TunesmithError("train.distributed: fsdp needs CUDA GPUs and none is visible", hint="use ddp on CPU")
    if engine == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise TunesmithError("train.distributed: deepspeed is not installed", hint="pip install deepspeed")
        if not torch.cuda.is_available():
            raise TunesmithError("train.distributed: deepspeed needs CUDA GPUs and none is visible")


def engine_arguments(cfg: RunConfig) -> dict[str, Any]:
    """TrainingArguments for the chosen engine (DDP needs none: torchrun's environment is enough)."""
    t = cfg.train
    if t.distributed == "fsdp":
        fsdp_config: dict[str, Any] = {"use_orig_params": True}
        if t.fsdp_wrap:
            fsdp_config["transformer_layer_cls_to_wrap"] = t.fsdp_wrap
        return {"fsdp": f"{t.fsdp_sharding} auto_wrap", "fsdp_config": fsdp_config}
    if t.distributed == "deepspeed":
        return {"deepspeed": deepspeed_config(t.deepspeed_stage, t.deepspeed_offload)}
    return {}


def deepspeed_config(stage: int, offload: bool) -> dict[str, Any]:
    """A ZeRO config whose sizes come from the Trainer ("auto"), so it matches the tunesmith config."""
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def free_port() -> int:
    """A TCP port nobody listens on right now (for the rendezvous of a single-machine run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
