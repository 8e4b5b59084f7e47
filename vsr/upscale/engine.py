"""Upscaler: frames in, finished frames out, on one device.

The Upscaler is what crosses threads (and later Ray): it takes RGB frames as numpy arrays
(H, W, 3) uint8 or uint16 and returns RGB arrays of the requested output size in the same dtype and
layout (contiguous (H, W, 3)), so neither reader nor writer does float work.

Per call: frames go to the device (CUDA: pinned host buffers, non-blocking copies on a side stream),
are reflect-padded and cut into fixed-shape tiles (vsr.upscale.tiling); tiles of consecutive frames
are batched to a fixed batch size (with CUDA graphs or compile, a short last batch is filled with
copies of its last tile) and run through the model (CUDA: channels_last, one CUDA graph per shape,
optional torch.compile); outputs are blended with feathered weights (a one-tile frame is its output);
each finished frame is reduced to the requested size and quantised, with the AdaIN colour fix, from
statistics of the whole native frame, folded into the quantisation. Interpolators (bicubic, lanczos)
skip all that: they resize straight to the output size, uint8 on a CPU without leaving integers.
cuda, cuda:N, mps and cpu take the same path; transfers and graphs differ on CUDA (vsr.upscale.cuda).

Guards: a tile whose output is not finite is recomputed in fp32 (counted in ``stats.nan_retries``);
non-finite in fp32 too, or after the colour fix, raises ProcessingError: no NaN frame is returned. On
out-of-memory in the model the batch is halved and the same tiles retried (``stats.oom_halvings``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from vsr.config.checks import COLOR_FIXES
from vsr.errors import ProcessingError, UsageError
from vsr.models.descriptor import ModelDescriptor
from vsr.upscale import colorfix, tiling
from vsr.upscale.convert import finite, normalise, quantise, resize
from vsr.upscale.cuda import CudaTransfers, GraphCache
from vsr.upscale.device import PRECISION_NAMES, exact_fp32, resolve_device, resolve_precision, tf32_note
from vsr.upscale.stats import UpscaleStats
from vsr.upscale.tiling import DEFAULT_TILE, DEFAULT_TILE_OVERLAP

log = logging.getLogger("vsr")

DEFAULT_BATCH = 16  # tiles per forward; H200 fp16 is near its best from 16-32; OOM halves it
MAX_SPARE_ACCUMULATORS = 2  # blend buffers kept between frames (about 400 MB each for 1080p at x4)
OOM_ERRORS = (torch.OutOfMemoryError,)  # torch.cuda.OutOfMemoryError is the same class


def _color_fix(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The colour correction ``name`` from vsr.upscale.colorfix, or None for 'none' (and for 'adain',
    which the engine folds into its quantisation as the affine map it is)."""
    if name not in COLOR_FIXES:
        raise UsageError(f"unknown colour fix {name!r}; use one of {', '.join(COLOR_FIXES)}")
    if name in ("none", "adain"):
        return None
    return lambda sr, lr: colorfix.apply_color_fix(name, sr, lr)


@dataclass
class _Frame:
    """One frame in flight inside a call."""

    index: int  # position in the call
    lr: torch.Tensor  # (1, 3, H, W) float32 in the model's value range, on device
    padded: torch.Tensor  # (1, 3, pad_h, pad_w) in the run dtype
    acc: torch.Tensor | None  # (3, pad_h*s, pad_w*s) fp32 blend accumulator (one-tile frames: the output)
    remaining: int  # tiles not yet blended


class Upscaler:
    """Runs one model on one device; see the module docstring for the frame format."""

    def __init__(
        self,
        model: nn.Module,
        *,
        descriptor: ModelDescriptor | None = None,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        tile: int = DEFAULT_TILE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch: int = DEFAULT_BATCH,
        color_fix: str = "auto",
        compile: bool = False,
        cuda_graphs: bool = True,
        pad_batches: bool | None = None,
    ) -> None:
        if tile < 0 or tile_overlap < 0 or (tile and 2 * tile_overlap > tile):
            raise UsageError(f"`tile` {tile}, `tile_overlap` {tile_overlap}: need tile >= 0 and overlap <= tile/2")
        if batch < 1:
            raise UsageError(f"`batch` must be at least 1, got {batch}")
        self.descriptor = descriptor or getattr(model, "descriptor", None)
        if not isinstance(self.descriptor, ModelDescriptor):
            raise TypeError("the model has no descriptor: load it with vsr.load_model, or pass descriptor=")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if PRECISION_NAMES[self.dtype] not in self.descriptor.precisions:
            if precision != "auto":
                raise UsageError(f"{self.descriptor.name} computes in {', '.join(self.descriptor.precisions)}, "
                                 f"not {precision}; choose one of those as `precision`")
            log.info("%s computes in %s: using fp32", self.descriptor.name, ", ".join(self.descriptor.precisions))
            self.dtype = torch.float32
        if self.device.type == "cuda" and self.dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise UsageError(f"{self.device} does not support bf16; use `precision` fp16 or fp32")
        self.scale, self.multiple = self.descriptor.scale, self.descriptor.multiple
        self.value_range = self.descriptor.value_range
        self.tile, self.tile_overlap, self.batch = tile, tile_overlap, batch
        # Interpolators resize straight to the requested size: no tiles, no x4 then a reduction.
        self.direct = self.descriptor.interpolates
        # auto: the model's own (AdaIN for AdcSR and compact, none for others' checkpoints); models that
        # cannot shift colour (interpolators) get none: it would only cost time.
        self.color_fix = self.descriptor.colour_fix(color_fix)
        self._fix = _color_fix(self.color_fix)
        self.cuda = self.device.type == "cuda"
        self.channels_last = self.cuda  # cuDNN's fast fp16 convolutions want NHWC
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # shapes are fixed: let cuDNN pick the fastest kernels
            log.info("%s on %s, %s; %s", self.descriptor.name, self.device, PRECISION_NAMES[self.dtype], tf32_note())
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._fn: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(self.model, dynamic=False) if compile else self.model
        )
        self.cuda_graphs = cuda_graphs and self.cuda
        self.graphs = GraphCache()  # per static shape; a failed capture runs that shape without one
        # Fill a short last batch to the fixed shape where static shapes pay (graphs, compile); on
        # other paths filler tiles would be pure extra work. None = that automatic choice.
        self.pad_batches = (self.cuda_graphs or compile) if pad_batches is None else pad_batches
        self._fp32_model: nn.Module | None = None  # made on the first non-finite tile
        self._plans: dict[tuple[int, int], tiling.TilePlan] = {}
        self._transfers = CudaTransfers(self.device) if self.cuda else None
        self._call_base = 0
        self._spare_acc: list[torch.Tensor] = []  # finished frames' accumulators, reused
        self.stats = UpscaleStats()

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, height: int, width: int) -> tiling.TilePlan:
        """The tile plan for frames of ``height`` x ``width`` (weights on the device), cached."""
        key = (height, width)
        if key not in self._plans:
            p = tiling.make_plan(
                height, width, tile=self.tile, overlap=self.tile_overlap, multiple=self.multiple, scale=self.scale
            )
            self._plans[key] = p.to(self.device)
        return self._plans[key]

    def frames_per_call(self, width: int, height: int) -> int:
        """How many consecutive frames one upscale() call should get so that their tiles fill
        fixed-size batches with little filler (>= 1)."""
        return tiling.frames_per_call(self.plan(height, width).count, self.batch)

    # -- the call ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def upscale(self, frames: Sequence[np.ndarray], out_size: tuple[int, int]) -> list[np.ndarray]:
        """Upscale RGB frames (H, W, 3), all the same size, to ``out_size`` = (width, height); same
        dtype as the input, contiguous (height, width, 3)."""
        if not frames:
            return []
        shape, dtype = frames[0].shape, frames[0].dtype
        if len(shape) != 3 or shape[2] != 3 or dtype not in (np.uint8, np.uint16):
            raise ValueError(f"frames must be (H, W, 3) uint8 or uint16, got {shape} {dtype}")
        if any(f.shape != shape or f.dtype != dtype for f in frames):
            raise ValueError("all frames of one upscale() call must have the same size and dtype")
        out_w, out_h = out_size
        if out_w < 1 or out_h < 1:
            raise ValueError(f"bad output size {out_size}")
        self._call_base = self.stats.frames  # frames finished before this call, for messages
        # cuda:N: streams, events and graphs follow the current device, so make it ours.
        with torch.cuda.device(self.device) if self.cuda else contextlib.nullcontext():
            try:
                if self.direct:
                    return self._interpolate(frames, out_h, out_w, np.dtype(dtype))
                return self._run(frames, self.plan(shape[0], shape[1]), out_h, out_w, np.dtype(dtype))
            except OOM_ERRORS as e:  # the model's own OOM halves the batch; this is everything else
                raise ProcessingError(
                    f"out of memory on {self.device} for {len(frames)} frame(s) of {shape[1]}x{shape[0]} "
                    f"outside the model (frame buffers, colour fix, resize): {e}".splitlines()[0]
                ) from e

    def _run(self, frames: Sequence[np.ndarray], plan: tiling.TilePlan, out_h: int, out_w: int,
             dtype: np.dtype) -> list[np.ndarray]:  # fmt: skip
        uploads = self._upload(frames)
        results: list[torch.Tensor | None] = [None] * len(frames)
        flags: list[torch.Tensor] = []  # per finished frame: all values finite (read at the end)
        live: dict[int, _Frame] = {}
        work = [(f, t) for f in range(len(frames)) for t in range(plan.count)]
        pos, pending = 0, None
        # One batch of lag: the finiteness flag of batch N is read once batch N+1 is queued, so the
        # host waits for N while the device already runs N+1; then N is blended.
        while pos < len(work) or pending is not None:
            queued = None
            if pos < len(work):
                items = work[pos : pos + self.batch]
                for f, _ in items:
                    if f not in live:
                        live[f] = self._start_frame(f, uploads[f], plan, dtype)
                x = torch.cat([tiling.extract(live[f].padded, plan, [t]) for f, t in items])
                try:
                    y = self._forward(x)
                except OOM_ERRORS:
                    self._halve_batch(plan)
                    continue
                pos += len(items)
                queued = (items, x, y, finite(y))
            if pending is not None:
                for f, out, ok_frame in self._settle(pending, live, plan, out_h, out_w, dtype):
                    results[f] = self._download(out)
                    flags.append(ok_frame)
            pending = queued
        return self._collect(results, flags, dtype)

    def _settle(self, batch: tuple, live: dict[int, _Frame], plan: tiling.TilePlan, out_h: int, out_w: int,
                dtype: np.dtype) -> list[tuple[int, torch.Tensor, torch.Tensor]]:  # fmt: skip
        """Check a computed batch (recomputing non-finite tiles), blend it, and finish the frames it
        completes: [(frame index, quantised frame, its finite flag)]."""
        items, x, y, ok = batch
        if not bool(ok.all()):  # the rare path recomputes right away
            y = self._recompute(items, x, ok, y, plan)
        done = []
        for f in sorted({f for f, _ in items}):
            ks = [k for k, (g, _) in enumerate(items) if g == f]  # consecutive: work is frame-major
            if plan.count == 1:  # the whole frame is this tile, with weight 1: adopt it
                live[f].acc = y[ks[0]] if y.dtype == torch.float32 else y[ks[0]].float()
            else:
                tiling.blend(live[f].acc, y[ks[0] : ks[-1] + 1], plan, [items[k][1] for k in ks])
            live[f].remaining -= len(ks)
            if live[f].remaining == 0:
                done.append((f, *self._finish(live.pop(f), plan, out_h, out_w, dtype)))
        return done

    def _interpolate(self, frames: Sequence[np.ndarray], out_h: int, out_w: int, dtype: np.dtype) -> list[np.ndarray]:
        """Interpolators: each frame resized straight to the output size."""
        results = [self._download(self._resize_direct(raw, event, out_h, out_w, dtype))
                   for raw, event in self._upload(frames)]
        return self._collect(results, [], dtype)

    def _resize_direct(self, raw: torch.Tensor, event: torch.cuda.Event | None, out_h: int, out_w: int,
                       dtype: np.dtype) -> torch.Tensor:  # fmt: skip
        """One frame through an interpolator's resize, quantised. uint8 on a CPU stays integer where
        the model can (torch's vectorised uint8 kernels: one pass, the (H, W, 3) layout kept as
        channels_last); everything else takes the float path."""
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
        with self._timing():
            if self.descriptor.integer_resize and raw.dtype == torch.uint8 and self.device.type == "cpu":
                y = self.model.resize(raw[None].permute(0, 3, 1, 2), out_h, out_w)  # (1, 3, h, w) channels_last
                out = y[0].permute(1, 2, 0).contiguous()  # (h, w, 3): already so, no copy
            else:
                y = self.model.resize(normalise(raw, dtype, self.value_range).to(self.dtype), out_h, out_w)
                out = quantise(y[0], dtype, self.value_range, in_place=True)
        self.stats.forward_calls += 1
        self.stats.tiles += 1
        self.stats.frames += 1
        return out

    # -- steps ------------------------------------------------------------------------------------

    def _upload(self, frames: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, torch.cuda.Event | None]]:
        """Frames to the device as integer (H, W, 3) tensors. CUDA: staged through pinned memory and
        copied on the side stream, so the copies overlap the model; each comes with its event."""
        if self._transfers is not None:
            return self._transfers.upload(frames)
        host = [torch.from_numpy(np.ascontiguousarray(f)) for f in frames]
        if self.device.type != "cpu" and host[0].dtype == torch.uint16:
            host = [h.to(torch.int32) for h in host]  # mps and others lack uint16 tensors
        return [(h.to(self.device), None) for h in host]

    def _start_frame(self, index: int, upload: tuple, plan: tiling.TilePlan, dtype: np.dtype) -> _Frame:
        raw, event = upload
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
        lr = normalise(raw, dtype, self.value_range)
        padded = tiling.pad_to_multiple(lr, self.multiple, plan.pad_h, plan.pad_w).to(self.dtype)
        if self.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        if plan.count == 1:
            return _Frame(index, lr, padded, None, 1)  # the model's output will be the frame
        shape = (3, plan.pad_h * self.scale, plan.pad_w * self.scale)
        # By position, not list.remove(): that compares tensors with ==, elementwise.
        spare = next((i for i, a in enumerate(self._spare_acc) if a.shape == shape), None)
        if spare is not None:
            acc = self._spare_acc.pop(spare).zero_()  # stream-ordered after the last use; no fresh pages
        else:
            acc = torch.zeros(shape, device=self.device)
        return _Frame(index, lr, padded, acc, plan.count)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """One batch through the model (filled to the fixed size with copies of its last tile when
        ``pad_batches``)."""
        real = x.shape[0]
        size = self.batch if self.pad_batches else real
        if real < size:
            x = torch.cat([x, x[-1:].expand(self.batch - real, *x.shape[1:])])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._timing():
            graph = None
            if self.cuda_graphs:
                graph, captured = self.graphs.get(self._fn, x, self.dtype)
                self.stats.graph_captures += captured
                self.stats.graph_failures = self.graphs.failures
            # A graph's output is overwritten by its next replay, and batches are settled one late.
            y = graph(x).clone() if graph is not None else self._fn(x)
        self.stats.forward_calls += 1
        self.stats.batch_sizes[size] = self.stats.batch_sizes.get(size, 0) + 1
        self.stats.tiles += real
        self.stats.filler_tiles += size - real
        return y[:real]

    def _halve_batch(self, plan: tiling.TilePlan) -> None:
        if self.batch == 1:
            raise ProcessingError(
                f"out of memory on {self.device} with batch 1 and {plan.tile_h}x{plan.tile_w} tiles; "
                "use a smaller `tile` or a device with more memory"
            )
        self.batch //= 2
        self.stats.oom_halvings += 1
        self.graphs.clear()  # their shapes no longer occur; free their memory pools
        if self.cuda:
            torch.cuda.empty_cache()

    def _recompute(self, items: list[tuple[int, int]], x: torch.Tensor, ok: torch.Tensor, y: torch.Tensor,
                   plan: tiling.TilePlan) -> torch.Tensor:  # fmt: skip
        """``y`` with its non-finite tiles replaced by an fp32 recomputation (counted)."""
        bad = [k for k, good in enumerate(ok.tolist()) if not good]
        where = ", ".join(f"frame {self._call_base + items[k][0]}, tile at LR (y, x) {plan.box(items[k][1])}"
                          for k in bad[:3])  # fmt: skip
        if self.dtype == torch.float32:
            raise ProcessingError(f"the model produced non-finite values in fp32 ({where})")
        y32 = self._fp32(x[bad])
        if not bool(finite(y32).all()):
            raise ProcessingError(f"the model produced non-finite values even in fp32 ({where})")
        self.stats.nan_retries += len(bad)
        y = y.float().clone()  # not the CUDA graph's static output
        y[bad] = y32
        return y

    def _fp32(self, x: torch.Tensor) -> torch.Tensor:
        if self._fp32_model is None:
            self._fp32_model = copy.deepcopy(self.model).float()
        with self._timing(), exact_fp32():
            y = self._fp32_model(x.float())
        self.stats.forward_calls += 1
        return y.float()

    def _finish(self, frame: _Frame, plan: tiling.TilePlan, out_h: int, out_w: int, dtype: np.dtype):
        """Crop, colour-correct the whole frame, resize, quantise; also a device flag 'all finite'
        (the tiles were checked as they came; here what the colour fix adds)."""
        s = self.scale
        sr = frame.acc[None, :, : plan.height * s, : plan.width * s]
        affine, ok = None, torch.ones((), dtype=torch.bool, device=self.device)
        if self.color_fix == "adain":  # statistics of the whole frame; applied inside quantise
            gain, bias = colorfix.adain_affine(sr, frame.lr)
            affine, ok = (gain[0], bias[0]), finite(torch.cat([gain, bias]).flatten()[None])[0]
        elif self._fix is not None:
            sr = self._fix(sr, frame.lr)
            ok = finite(sr)[0]
        # Reductions (area, bicubic) are linear with weights summing to one, so they commute with
        # AdaIN's per-channel affine map: reduce first, then the map and quantisation on the small frame.
        sr = resize(sr, out_h, out_w)
        self.stats.frames += 1
        out = quantise(sr[0], dtype, self.value_range, affine=affine, in_place=True)  # acc or a fresh tensor
        if plan.count > 1:
            self._spare_acc = [frame.acc] + self._spare_acc[: MAX_SPARE_ACCUMULATORS - 1]
        return out, ok

    def _download(self, out: torch.Tensor) -> torch.Tensor:
        """Start the copy of a finished frame to host memory (CUDA: pinned, side stream)."""
        if self._transfers is not None:
            return self._transfers.download(out)
        return out.cpu()

    def _collect(self, results: list, finite: list[torch.Tensor], dtype: np.dtype) -> list[np.ndarray]:
        if self._transfers is not None:
            for seconds in self._transfers.synchronize():
                self.stats.seconds_model += seconds
        if finite and not bool(torch.stack(finite).all()):
            raise ProcessingError("a finished frame has non-finite values (colour fix or resize); not written")
        # The numpy arrays share memory with (pinned) host tensors, which they keep alive.
        return [r.numpy() if r.dtype != torch.int32 else r.numpy().astype(dtype) for r in results]

    @contextlib.contextmanager
    def _timing(self):
        """Adds the model time of the block to ``stats.seconds_model``: CUDA events (read at the
        end of the call, no sync here), wall time elsewhere."""
        if self._transfers is not None:
            with self._transfers.timing():
                yield
            return
        t0 = time.perf_counter()
        yield
        self.stats.seconds_model += time.perf_counter() - t0
