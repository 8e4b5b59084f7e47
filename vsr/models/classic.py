"""Classical ×4 interpolators that follow the model contract: the baselines every model must beat."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALE = 4  # native upscale factor of the baselines, as AdcSR's
LANCZOS_A = 3  # Lanczos window half-width in input pixels (Lanczos-3, as ffmpeg's and PIL's default)


class Bicubic(nn.Module):
    """Bicubic (a = -0.75, PyTorch's kernel) ×4, pixel centres aligned."""

    scale = SCALE
    multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return y.clamp(-1.0, 1.0)


def _lanczos(x: torch.Tensor, a: int) -> torch.Tensor:
    return torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))


def lanczos_phase_kernels(scale: int, a: int) -> torch.Tensor:
    """1-D Lanczos weights, one row per output phase: shape (scale, 2a), rows sum to 1.

    Output pixel ``scale*i + p`` sits at input coordinate ``i + (p + 0.5)/scale - 0.5``; its taps are
    the input pixels ``i - a + 1 .. i + a``, so row ``p`` weights offsets ``-a+1 .. a``.
    """
    offsets = torch.arange(-a + 1, a + 1, dtype=torch.float64)
    rows = []
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5
        w = _lanczos(offsets - d, a)
        rows.append(w / w.sum())
    return torch.stack(rows)


class Lanczos(nn.Module):
    """Separable Lanczos-3 ×4 as one convolution per phase followed by a pixel shuffle."""

    scale = SCALE
    multiple = 1

    def __init__(self) -> None:
        super().__init__()
        k = lanczos_phase_kernels(self.scale, LANCZOS_A)  # (s, 2a)
        # 2-D kernel for output phase (py, px) is the outer product of the 1-D rows.
        k2 = torch.einsum("yi,xj->yxij", k, k).reshape(self.scale * self.scale, 1, 2 * LANCZOS_A, 2 * LANCZOS_A)
        self.register_buffer("kernel", k2.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        a = LANCZOS_A
        # Taps -a+1..a around each pixel: pad a-1 before, a after; replicate edges like swscale.
        xp = F.pad(x.reshape(n * c, 1, h, w), (a - 1, a, a - 1, a), mode="replicate")
        y = F.conv2d(xp, self.kernel.to(x.dtype))  # (n*c, s*s, h, w)
        y = F.pixel_shuffle(y, self.scale).reshape(n, c, h * self.scale, w * self.scale)
        return y.clamp(-1.0, 1.0)


def build_bicubic() -> nn.Module:
    return Bicubic()


def build_lanczos() -> nn.Module:
    return Lanczos()

