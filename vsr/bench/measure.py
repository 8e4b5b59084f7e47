"""Measuring helpers of ``vsr bench`` and the benchmark scripts: repeated timings, device syncs, peak
memory, the matmul ceiling, FLOPs of a tile, and the engine's steps timed one by one."""

from __future__ import annotations

import contextlib
import resource
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch

from vsr.upscale import tiling

# Engine stages timed in the instrumented pass (method of the Upscaler, or tiling.blend).
ENGINE_STAGES = (("host→device", "_upload"), ("pad+cut", "_start_frame"), ("model", "_forward"),
                 ("blend", "blend"), ("colour fix+resize+quantise", "_finish"), ("device→host", "_download"),
                 ("interpolate+quantise (interpolators)", "_resize_direct"))


T = TypeVar("T")


def repeat_times(fn: Callable[[], T], repeats: int) -> tuple[list[float], T]:
    """``fn`` once to warm up, then ``repeats`` timed calls: (seconds of each call, the last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peaks(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator counter, and the process's VmHWM (Linux clear_refs 5)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def host_peak_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux (no reset)


def device_peak_mb(device: torch.device, host_mb: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return host_mb  # cpu (and mps, whose memory is the host's): the device is the host


def matmul_tflops(device: torch.device, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """The ceiling: best TFLOP/s of a square matmul in ``dtype`` on ``device``, timed here."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        t0 = time.perf_counter()
        for _ in range(4 if device.type == "cuda" else 1):
            a @ b
        sync(device)
        dt = (time.perf_counter() - t0) / (4 if device.type == "cuda" else 1)
        best, spent = min(best, dt), spent + dt
    return 2 * n**3 / best / 1e12


def tile_flops(model: torch.nn.Module, tile_h: int, tile_w: int, device: torch.device, dtype: torch.dtype) -> int:
    """FLOPs of one tile through the model (FlopCounterMode: a multiply-add is 2; matmul/conv/attention
    only, so interpolation-only models count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, tile_h, tile_w, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


@contextlib.contextmanager
def instrumented(up, stages: dict[str, float]) -> Iterator[None]:
    """Time the engine's steps by wrapping them on this instance (and vsr.upscale.tiling.blend) with device
    syncs, so asynchronous CUDA work lands in the step that queued it. Undone on exit."""
    device = up.device

    def wrap(name: str, fn):
        def timed(*a, **k):
            sync(device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(device)
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0
            return out

        return timed

    original_blend = tiling.blend
    for name, attr in ENGINE_STAGES:
        if attr == "blend":
            tiling.blend = wrap(name, original_blend)
        else:
            setattr(up, attr, wrap(name, getattr(up, attr)))
    try:
        yield
    finally:
        tiling.blend = original_blend
        for _, attr in ENGINE_STAGES:
            if attr != "blend":
                delattr(up, attr)


