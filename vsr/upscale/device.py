"""Device, precision and CPU threads of an upscaler: what ``device="auto"`` and ``precision="auto"``
mean, and how many threads the model gets on a CPU."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import torch

from vsr.config.checks import PRECISIONS
from vsr.errors import UsageError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_NAMES = {v: k for k, v in DTYPES.items()}
BUSY_CORES = 0.5  # cores kept busy by other processes from which the model leaves one core free
BUSY_SAMPLE_S = 0.1  # seconds over which busy cores are measured when a session opens


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(spec: str | torch.device) -> torch.device:
    """'auto' → cuda if available, else mps, else cpu; other strings are passed to torch."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise UsageError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested but CUDA is not available; use `device` cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type == "mps" and not mps_available():
        raise UsageError(f"device {spec!r} requested but MPS is not available; use `device` cpu")
    return device


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """'auto' → fp16 on CUDA, fp32 elsewhere."""
    if spec not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r}; use one of {', '.join(PRECISIONS)}")
    if spec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[spec]


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off inside the block (CUDA matmuls and cuDNN convolutions), restored after: fp32
    references and the NaN guard's fp32 recomputation must really be fp32 (TF32 keeps 10 mantissa
    bits, about fp16's precision)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def tf32_note() -> str:
    """The TF32 settings in force, for the log of a CUDA run."""
    return (f"TF32: matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}, "
            f"cuDNN {'on' if torch.backends.cudnn.allow_tf32 else 'off'} (fp32 recomputations run with TF32 off)")


def busy_cores(window_s: float = BUSY_SAMPLE_S) -> float | None:
    """How many cores other processes keep busy right now (Linux /proc/stat over ``window_s``), or
    None where that cannot be read. Unlike the load average, it does not remember a run that just ended."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def default_cpu_threads(busy: float | None = None) -> int:
    """Model threads on a CPU. torch's threads spin-wait, so a core that another process holds is
    ruinous: on 2 cores with a training job on one, compact ran end to end at 1.4 fps with 2 model
    threads and 5.4 with 1; on the same machine idle, 2 threads ran 8.1-9.3 fps and 1 thread 6.4-7.0
    (decode and encode fit in between). So all cores when the machine is idle (fewer than
    BUSY_CORES busy, measured now unless ``busy`` is given), else all cores but one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    if busy is None:
        busy = busy_cores()
    if busy is None:  # no /proc/stat: the load average, else assume a busy machine
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            busy = float(cores)
    return cores if busy < BUSY_CORES else max(1, cores - 1)


