"""Mixed precision: bf16 autocast where the hardware does bf16 matrix work natively, fp32 elsewhere."""
from __future__ import annotations

import contextlib
import functools

import torch

from .errors import VaekitError


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """True when the CPU has AVX-512 bf16 or AMX instructions (read from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=None)
def cpu_runs_bf16() -> bool:
    """Whether oneDNN computes bf16 on this CPU at all (AVX-512 BW/VL/DQ or AVX-NE-CONVERT). On an AVX2-only CPU
    PyTorch's LSTM and oneDNN's transposed convolution refuse bf16, and its matrix products run emulated (0.3
    GFLOP/s against 92 in fp32 on a 2-core AMD EPYC)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """"auto" -> "bf16" where supported, else "fp32"."""
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cpu":
            return "bf16" if cpu_has_bf16() else "fp32"
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise VaekitError(f"precision {precision!r}: choose auto, bf16, fp16 or fp32")
    if precision == "fp16" and device.type == "cpu":
        raise VaekitError("--precision fp16 is for GPUs (CPUs compute fp16 slowly); use bf16 or fp32 on a CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_runs_bf16():
        raise VaekitError("--precision bf16: this CPU has no bf16 support (it needs AVX-512 or AVX-NE-CONVERT): "
                          "PyTorch's LSTM refuses it and matrix work runs hundreds of times slower; use fp32 or auto")
    return precision


def autocast(precision: str, device: torch.device | str = "cpu"):
    """Autocast the networks to bf16; the losses cast their inputs back to fp32 (see models)."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()
