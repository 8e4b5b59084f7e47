"""Upscaler: frames in, finished frames out, on one device.

The Upscaler is what crosses threads (and later Ray): it takes RGB frames as numpy arrays
(H, W, 3) uint8 or uint16, and returns RGB arrays of the requested output size in the same dtype,
so neither reader nor writer does float work.

This first version runs each frame whole; tiling, cross-frame batching, CUDA graphs and the NaN
guard arrive with the engine issue behind the same API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import UsageError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str) -> torch.device:
    """'auto' → cuda if available, else mps, else cpu; other strings are passed to torch."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise UsageError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    return device


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """'auto' → fp16 on CUDA, fp32 elsewhere."""
    if spec not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r}; use one of {', '.join(PRECISIONS)}")
    if spec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[spec]


@dataclass
class UpscaleStats:
    frames: int = 0  # frames finished
    forward_calls: int = 0  # model invocations
    nan_retries: int = 0  # tiles recomputed in fp32 after a non-finite result
    seconds_model: float = 0.0  # wall time inside the model (synchronised)
    extra: dict = field(default_factory=dict)


def to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8/uint16 → (1, 3, H, W) float32 in [-1, 1]."""
    peak = 65535.0 if frame.dtype == np.uint16 else 255.0
    t = torch.from_numpy(np.ascontiguousarray(frame)).to(device)
    t = t.permute(2, 0, 1).unsqueeze(0).float()
    return t * (2.0 / peak) - 1.0


def to_array(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] → (H, W, 3) uint8/uint16, rounded."""
    peak = 65535.0 if dtype == np.uint16 else 255.0
    y = ((t[0].float().clamp(-1, 1) + 1.0) * (peak / 2.0)).round()
    y = y.permute(1, 2, 0).to("cpu")
    # torch has no uint16 arithmetic on every version: go through int32.
    return y.to(torch.int32).numpy().astype(dtype)


def resize(t: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Resize the model's native output to the requested size: area for integer ratios, else
    antialiased bicubic."""
    h, w = t.shape[-2:]
    if (h, w) == (out_h, out_w):
        return t
    if h % out_h == 0 and w % out_w == 0 and h // out_h == w // out_w:
        return F.interpolate(t, size=(out_h, out_w), mode="area")
    return F.interpolate(t, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True)


class Upscaler:
    """Runs one model on one device; see the module docstring for the frame format."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        tile: int = 0,
        tile_overlap: int = 16,
        batch: int = 1,
        color_fix: str = "none",
    ) -> None:
        self.device = torch.device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.tile, self.tile_overlap, self.batch, self.color_fix = tile, tile_overlap, batch, color_fix
        self.stats = UpscaleStats()

    @torch.inference_mode()
    def upscale(self, frames: Sequence[np.ndarray], out_size: tuple[int, int]) -> list[np.ndarray]:
        """Upscale RGB frames (H, W, 3) to ``out_size`` = (width, height), same dtype as the input."""
        out_w, out_h = out_size
        m = self.model.multiple
        results = []
        for frame in frames:
            x = to_tensor(frame, self.device)
            h, w = x.shape[-2:]
            ph, pw = (-h) % m, (-w) % m
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
            y = self.model(x.to(self.dtype)).float()
            self.stats.forward_calls += 1
            s = self.model.scale
            y = y[..., : h * s, : w * s]
            results.append(to_array(resize(y, out_h, out_w), frame.dtype))
            self.stats.frames += 1
        return results
