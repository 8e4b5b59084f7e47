"""Colour correction of a model's raw output against its low-resolution input: pure tensor functions.

All take ``sr`` (N, 3, H', W') and ``lr`` (N, 3, H, W), both in [-1, 1], and return a tensor shaped
and typed like ``sr`` (statistics are computed in fp32). Clamping is the caller's business: the
official pipeline corrects the unclamped output and clamps afterwards.

- ``adain``: the official AdcSR test.py correction. Per image and channel,
  ``(sr - mean(sr)) / std(sr) * std(lr) + mean(lr)`` with unbiased std and no epsilon, so results
  equal the official ones bit for bit, except where a channel of ``sr`` is exactly flat (std 0): there
  the official formula divides 0 (up to rounding) by 0, and the result is ``mean(lr)``, its limit.
- ``wavelet``: StableSR's / OSEDiff's wavelet colour fix. Both images are split by a 5-level à-trous
  wavelet (3×3 binomial blur, dilation 1, 2, 4, 8, 16, replicate padding); the result is the high
  frequencies of ``sr`` plus the residual low frequency of ``lr`` upsampled (bicubic) to ``sr``'s size.
- ``none``: ``sr`` unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from vsr.config.checks import COLOR_FIXES as COLOR_FIX_NAMES
from vsr.errors import UsageError

WAVELET_LEVELS = 5  # as StableSR / OSEDiff: dilations 1..16 leave only very low frequencies


def adain(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    if lr.shape[-2] * lr.shape[-1] < 2:  # one pixel has no spread to match: leave the output as it is
        return sr
    x, ref = sr.float(), lr.float()
    mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
    flat = std == 0
    normed = torch.where(flat, 0.0, (x - mean) / torch.where(flat, 1.0, std))
    out = normed * ref.std(dim=(2, 3), keepdim=True) + ref.mean(dim=(2, 3), keepdim=True)
    return out.to(sr.dtype)


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    kernel = torch.outer(k1, k1).expand(x.shape[1], 1, 3, 3)
    x = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(x, kernel, groups=x.shape[1], dilation=dilation)


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the detail bands, the residual low frequency)."""
    high = torch.zeros_like(x)
    for level in range(WAVELET_LEVELS):
        low = _blur(x, 2**level)
        high = high + (x - low)
        x = low
    return high, x


def wavelet(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    x, ref = sr.float(), lr.float()
    if ref.shape[-2:] != x.shape[-2:]:
        ref = F.interpolate(ref, size=x.shape[-2:], mode="bicubic", align_corners=False)
    high, _ = _split(x)
    _, low = _split(ref)
    return (high + low).to(sr.dtype)


def none(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    return sr


COLOR_FIXES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "adain": adain,
    "wavelet": wavelet,
    "none": none,
}
DEFAULT_COLOR_FIX = "adain"  # the official one
assert tuple(COLOR_FIXES) == COLOR_FIX_NAMES, "the options vsr.config offers are the ones here"


def apply_color_fix(name: str, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    if name not in COLOR_FIXES:
        raise UsageError(f"unknown colour fix {name!r}; use one of {', '.join(COLOR_FIXES)}")
    if sr.ndim != 4 or lr.ndim != 4 or sr.shape[:2] != lr.shape[:2]:
        raise ValueError(f"colour fix needs (N, C, H, W) tensors with the same N and C, got "
                         f"{tuple(sr.shape)} and {tuple(lr.shape)}")
    return COLOR_FIXES[name](sr, lr)
