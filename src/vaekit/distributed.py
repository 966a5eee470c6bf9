"""Devices and PyTorch's distributed engine.

``torchrun --nproc-per-node N -m vaekit train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT for every process; vaekit then joins the process group (gloo on CPU, NCCL on CUDA) and trains
with DistributedDataParallel: every rank takes its own share of each epoch's shuffled batches, gradients are
averaged across ranks after each backward pass, and rank 0 alone logs, plots and writes checkpoints.
Multi-node runs use torchrun's own rendezvous options (--nnodes, --node-rank, --rdzv-endpoint, ...).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from .config import TrainConfig, choices
from .errors import VaekitError

DEVICES = tuple(choices(TrainConfig, "device"))  # --device's choices, from the training config's field


def resolve_device(name: str = "auto") -> torch.device:
    """"auto": this process's CUDA GPU (LOCAL_RANK under torchrun), else Apple's MPS, else the CPU."""
    if name not in DEVICES:
        raise VaekitError(f"--device {name!r}: choose one of {', '.join(DEVICES)}")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise VaekitError("--device cuda: this PyTorch build sees no CUDA GPU (use --device cpu or auto)")
        return torch.device("cuda", local % torch.cuda.device_count())
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise VaekitError("--device mps: Apple's Metal backend is not available here (use --device cpu or auto)")
        return torch.device("mps")
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (a tensor, or a dataclass of tensors such as TextBatch) on ``device``."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device, non_blocking=True)
                                             for f in dataclasses.fields(batch)
                                             if isinstance(getattr(batch, f.name), torch.Tensor)})
    return batch


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (once); a no-op for one process."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
        if local > gpus:  # NCCL refuses two ranks on one GPU, with an error that does not say so plainly
            raise VaekitError(f"torchrun started {local} processes on this machine, which has {gpus} CUDA GPU"
                              f"{'s' if gpus != 1 else ''}; NCCL needs one GPU per process: use --nproc-per-node "
                              f"{gpus}, or --device cpu for CPU processes")
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def max_over_ranks(*values: float, device: torch.device | None = None) -> list[float]:
    """Each value's maximum over the ranks (one all-reduce): flags, or a time that all ranks must agree on."""
    if not active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device or "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def broadcast_error(message: str | None) -> str | None:
    """Rank 0's error message (or None) on every rank: setup work done by rank 0 alone can fail for all."""
    if not active():
        return message
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(work):
    """Run ``work()`` on rank 0 alone (setup that writes files); every rank then sees its error, if any,
    as a VaekitError, and waits until it is done. Returns work()'s result on rank 0, None elsewhere."""
    result, error = None, None
    if is_main():
        try:
            result = work()
        except VaekitError as exc:
            error = str(exc)
            if not active():
                raise
    error = broadcast_error(error)
    if error is not None:
        raise VaekitError(error)
    barrier()
    return result


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
