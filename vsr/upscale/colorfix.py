"""Colour correction of a model's raw output against its low-resolution input: pure tensor functions.

All take ``sr`` (N, 3, H', W') and ``lr`` (N, 3, H, W), both in [-1, 1], and return a tensor shaped
and typed like ``sr`` (statistics are computed in fp32). Clamping is the caller's business: the
official pipeline corrects the unclamped output and clamps afterwards.

- ``adain``: the official AdcSR test.py correction. Per image and channel,
  ``(sr - mean(sr)) / std(sr) * std(lr) + mean(lr)`` with unbiased std and no epsilon, computed as
  the affine map ``sr * gain + bias`` it is (``adain_affine``), so results equal the official ones up
  to float rounding (about 1e-7), except where a channel of ``sr`` is exactly flat (std 0): there the
  official formula divides 0 (up to rounding) by 0, and the result is ``mean(lr)``, its limit.
- ``wavelet``: StableSR's / OSEDiff's wavelet colour fix. Both images are split by a 5-level à-trous
  wavelet (3×3 binomial blur, dilation 1, 2, 4, 8, 16, replicate padding); the result is the high
  frequencies of ``sr`` plus the residual low frequency of ``lr`` upsampled (bicubic) to ``sr``'s size,
  computed as ``sr + low(lr↑ - sr)`` (one chain of blurs: they are linear).
- ``none``: ``sr`` unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from vsr.config.checks import COLOR_FIXES as COLOR_FIX_NAMES
from vsr.errors import UsageError

WAVELET_LEVELS = 5  # as StableSR / OSEDiff: dilations 1..16 leave only very low frequencies


def adain_affine(sr: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaIN as the per-image, per-channel affine map it is: (gain, bias), each (N, C, 1, 1) fp32, with
    ``adain(sr, lr) = sr * gain + bias``. One pass over ``sr`` (var_mean) and one over ``lr``; the
    engine folds the map into its quantisation, so the colour fix costs no pass of its own."""
    if lr.shape[-2] * lr.shape[-1] < 2:  # one pixel has no spread to match: leave the output as it is
        one = torch.ones(*sr.shape[:2], 1, 1, device=sr.device)
        return one, torch.zeros_like(one)
    var, mean = torch.var_mean(sr.float(), dim=(2, 3), keepdim=True)
    ref_var, ref_mean = torch.var_mean(lr.float(), dim=(2, 3), keepdim=True)
    std = var.sqrt()
    flat = std == 0
    gain = torch.where(flat, 0.0, ref_var.sqrt() / torch.where(flat, 1.0, std))  # flat: the limit, mean(lr)
    return gain, ref_mean - mean * gain


def adain(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    gain, bias = adain_affine(sr, lr)
    return torch.addcmul(bias, sr.float(), gain).to(sr.dtype)


def _blur(x: torch.Tensor, d: int) -> torch.Tensor:
    """3×3 binomial blur ([1, 2, 1]/4 each way) with dilation ``d``, replicate padding: as two
    separable passes of shifted adds (a depthwise convolution costs about 5× more on a CPU)."""
    x = F.pad(x, (d, d, d, d), mode="replicate")
    v = torch.add(x[..., : -2 * d, :], x[..., 2 * d :, :]).add_(x[..., d:-d, :], alpha=2)  # (N, C, H, W + 2d)
    return torch.add(v[..., : -2 * d], v[..., 2 * d :]).add_(v[..., d:-d], alpha=2).mul_(1 / 16)  # (N, C, H, W)


def _low(x: torch.Tensor) -> torch.Tensor:
    """The residual low frequency after WAVELET_LEVELS à-trous blurs (dilation 1, 2, 4, ...)."""
    for level in range(WAVELET_LEVELS):
        x = _blur(x, 2**level)
    return x


def wavelet(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """``sr``'s detail bands on ``lr``'s residual low frequency: sr - low(sr) + low(lr↑) = sr + low(lr↑ - sr),
    the blurs being linear, so one chain of blurs instead of two. The chain runs at ``sr``'s size:
    blurring at half or a quarter of it and upsampling misses by up to 1.5 / 3.0 levels of 255 on a
    real 720p frame (benchmarks/colorfix.py, benchmarks/README.md), where the full-size chain is exact."""
    x = sr.float()
    ref = lr.float()
    if ref.shape[-2:] != x.shape[-2:]:
        diff = F.interpolate(ref, size=x.shape[-2:], mode="bicubic", align_corners=False).sub_(x)
    else:
        diff = ref - x
    return _low(diff).add_(x).to(sr.dtype)


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
