"""Frames between numpy and the model: integer RGB (H, W, 3) ↔ float (1, 3, H, W) in a model's value
range, the resize of the native output to the requested size, and the finiteness check."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MODEL_RANGE = (-1.0, 1.0)  # vsr's models take and give [-1, 1]; others say so in their descriptor


def peak_of(dtype: np.dtype) -> float:
    return 65535.0 if dtype == np.uint16 else 255.0


def to_tensor(frame: np.ndarray, device: torch.device, value_range: tuple[float, float] = MODEL_RANGE) -> torch.Tensor:
    """(H, W, 3) uint8/uint16 → (1, 3, H, W) float32 in ``value_range``."""
    return normalise(torch.from_numpy(np.ascontiguousarray(frame)).to(device), frame.dtype, value_range)


def to_array(t: torch.Tensor, dtype: np.dtype, value_range: tuple[float, float] = MODEL_RANGE) -> np.ndarray:
    """(1, 3, H, W) in ``value_range`` → (H, W, 3) uint8/uint16, rounded."""
    return quantise(t[0], np.dtype(dtype), value_range).cpu().numpy()


def normalise(hwc: torch.Tensor, dtype: np.dtype, value_range: tuple[float, float] = MODEL_RANGE) -> torch.Tensor:
    """Integer (H, W, 3) → float32 (1, 3, H, W) with 0 → low and peak → high of ``value_range``."""
    lo, hi = value_range
    # uint16 tensors support few ops: widen first.
    x = hwc.to(torch.int32) if hwc.dtype == torch.uint16 else hwc
    return x.permute(2, 0, 1).unsqueeze(0).float() * ((hi - lo) / peak_of(dtype)) + lo


def quantise(chw: torch.Tensor, dtype: np.dtype, value_range: tuple[float, float] = MODEL_RANGE, *,
             affine: tuple[torch.Tensor, torch.Tensor] | None = None, in_place: bool = False) -> torch.Tensor:
    """(3, H, W) float in ``value_range`` → contiguous (H, W, 3) uint8/uint16 on the same device,
    rounded half up. ``affine`` = (gain, bias), per channel (3, 1, 1), is applied first (the AdaIN
    colour fix, folded in here so that it costs no pass of its own). With ``in_place`` an fp32 ``chw``
    is used as the scratch buffer (the engine's own accumulators): three passes over the float frame
    (multiply-add, clamp, conversion) and the transpose on the small integer tensor."""
    lo, hi = value_range
    peak = peak_of(dtype)
    scale = peak / (hi - lo)
    offset = 0.5 - lo * scale  # value lo → 0.5, hi → peak + 0.5: truncation then rounds half up
    own = in_place and chw.dtype == torch.float32
    if affine is None:
        y = chw if own else chw.clone() if chw.dtype == torch.float32 else chw.float()
        y = y.mul_(scale).add_(offset)
    else:
        gain, bias = affine
        y = torch.addcmul(bias * scale + offset, chw.float(), gain * scale, out=chw if own else None)
    y = y.clamp_(0.5, peak + 0.5)  # = clamping to value_range first: the map is increasing
    wide = torch.int32 if y.device.type not in ("cpu", "cuda") else torch.uint16  # mps: no uint16
    q = y.to(wide if dtype == np.uint16 else torch.uint8)  # truncation: floor(v + 0.5)
    return q.permute(1, 2, 0).contiguous()


def finite(y: torch.Tensor) -> torch.Tensor:
    """Per item of a batch: True where every value is finite (one fp32 sum: NaN and inf propagate;
    model outputs are near their value range, so a finite sum cannot overflow)."""
    return y.flatten(1).sum(1, dtype=torch.float32).isfinite()


def resize(t: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Resize the model's native output to the requested size: area for integer ratios, else
    antialiased bicubic."""
    h, w = t.shape[-2:]
    if (h, w) == (out_h, out_w):
        return t
    if h % out_h == 0 and w % out_w == 0 and h // out_h == w // out_w:
        return F.interpolate(t, size=(out_h, out_w), mode="area")
    return F.interpolate(t, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True)
