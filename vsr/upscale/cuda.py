"""CUDA machinery of the Upscaler: graph capture/replay per static shape, overlapped transfers.

vsr.upscale.engine runs one model on any device; on CUDA it hands two jobs to this module. ``GraphCache``
captures one CUDA graph of the model per static (batch, tile) input shape and replays it, copying
each batch into the graph's static input. ``CudaTransfers`` stages frames through pinned host memory
and copies them on a side stream, each upload with its event so the model waits for its own frame
only, starts the download of finished frames the same way, and times the model with CUDA events that
are read once at the end of a call instead of synchronising after each batch.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

log = logging.getLogger("vsr")

GRAPH_WARMUP_ITERS = 3  # eager runs on a side stream before a CUDA graph capture (PyTorch's advice)


def is_out_of_memory(e: BaseException) -> bool:
    """Out-of-memory however it surfaces: torch.OutOfMemoryError, or (torch 2.8+, inside a graph
    capture) an AcceleratorError / RuntimeError whose message says so."""
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


class CudaGraph:
    """One CUDA graph of ``fn`` for one static input shape; replay copies into the static input.
    Warm-up and capture run on a stream of the example's own device, made current for them."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> None:
        device = example.device
        with torch.cuda.device(device):
            self.inp = example.clone()
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_ITERS):
                    fn(self.inp)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=side):  # not a capture stream of its own choosing
                self.out = fn(self.inp)
            torch.cuda.current_stream(device).wait_stream(side)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inp.copy_(x)
        self.graph.replay()
        return self.out  # overwritten by the next replay: the engine copies what it keeps


class GraphCache:
    """CUDA graphs of a model function, one per static (input shape, dtype), captured on first use.

    A capture that fails is not fatal: that shape runs without a graph from then on (compiled or
    eager, whatever ``fn`` is) and ``failures`` counts it, except out-of-memory, which is raised as
    torch.OutOfMemoryError so that the engine halves its batch. ``capture`` makes the graph
    (CudaGraph; tests pass a stand-in)."""

    def __init__(self, capture: Callable[[Callable, torch.Tensor], Callable] | None = None) -> None:
        self._graphs: dict[tuple, Callable | None] = {}
        self.capture = capture or CudaGraph
        self.failures = 0

    def get(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            dtype: torch.dtype) -> tuple[Callable | None, bool]:  # fmt: skip
        """The graph for ``x``'s shape (``x`` is the capture's example) or None where its capture
        failed, and True if captured now."""
        key = (tuple(x.shape), dtype)
        if key in self._graphs:
            return self._graphs[key], False
        try:
            graph = self.capture(fn, x)
        except Exception as e:  # noqa: BLE001 - any capture error: this shape runs without a graph
            if is_out_of_memory(e):
                raise torch.OutOfMemoryError(f"out of memory capturing a CUDA graph for {tuple(x.shape)}: {e}") from e
            log.warning("CUDA graph capture failed for input %s %s (%s); running that shape without a graph",
                        tuple(x.shape), dtype, str(e).splitlines()[0] if str(e) else type(e).__name__)
            self.failures += 1
            self._graphs[key] = None
            return None, False
        self._graphs[key] = graph
        return graph, True

    def clear(self) -> None:
        """Drop every graph (their shapes no longer occur), freeing their memory pools."""
        self._graphs.clear()


class CudaTransfers:
    """Host↔device copies through pinned memory on a side stream, and the model's CUDA-event timing."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._copy_stream = torch.cuda.Stream(device)
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def upload(self, frames: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, torch.cuda.Event]]:
        """Frames to the device as integer (H, W, 3) tensors, staged through pinned memory and copied
        on the side stream, so the copies overlap the model; each comes with its event."""
        main = torch.cuda.current_stream(self.device)
        self._copy_stream.wait_stream(main)  # the destination memory was last used on main
        out = []
        for f in frames:
            src = torch.from_numpy(np.ascontiguousarray(f))
            pinned = torch.empty(src.shape, dtype=src.dtype, pin_memory=True).copy_(src)
            dst = torch.empty(src.shape, dtype=src.dtype, device=self.device)
            with torch.cuda.stream(self._copy_stream):
                dst.copy_(pinned, non_blocking=True)
                event = torch.cuda.Event()
                event.record(self._copy_stream)
            out.append((dst, event))
        return out

    def download(self, out: torch.Tensor) -> torch.Tensor:
        """Start the copy of a finished frame to pinned host memory on the side stream."""
        self._copy_stream.wait_stream(torch.cuda.current_stream(self.device))
        host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        with torch.cuda.stream(self._copy_stream):
            host.copy_(out, non_blocking=True)
        out.record_stream(self._copy_stream)  # keep its memory until the copy is done
        return host

    def synchronize(self) -> list[float]:
        """Wait for every copy and kernel of the call; the model seconds timed since the last call."""
        self._copy_stream.synchronize()
        torch.cuda.current_stream(self.device).synchronize()
        seconds = [start.elapsed_time(end) / 1000.0 for start, end in self._events]
        self._events.clear()
        return seconds

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Records CUDA events around the block, read by :meth:`synchronize` (no sync here)."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield
        end.record()
        self._events.append((start, end))
