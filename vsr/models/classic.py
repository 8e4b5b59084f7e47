"""Classical interpolators, the baselines every model must beat: ×4 by the model contract, and any size
directly through ``resize`` (their descriptor says ``interpolates``: the engine asks them for the
output size instead of computing ×4 and reducing it)."""

from __future__ import annotations

from typing import Callable

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

    def resize(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, C, H, W) → (N, C, height, width), bicubic, pixel centres aligned (×4: ``forward``).
        Float in [-1, 1], or uint8 on a CPU: torch's uint8 kernel (vectorised, about 20× faster than
        the float one at 720p) rounds and clamps each separable pass to 0-255, as 8-bit resizers do;
        on real footage it is within 1 level of the float result on all but ~1e-5 of pixels."""
        if (height, width) == (x.shape[-2], x.shape[-1]):
            return x
        y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
        return y if y.dtype == torch.uint8 else y.clamp(-1.0, 1.0)


BICUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic: the kernel F.interpolate(mode="bicubic") uses


def _lanczos(x: torch.Tensor, a: int) -> torch.Tensor:
    return torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))


def _cubic(x: torch.Tensor, a: float = BICUBIC_A) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def phase_kernels(scale: int, radius: int, weight: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """1-D interpolation weights, one row per output phase: shape (scale, 2·radius + 1), rows sum to 1.

    Output pixel ``scale*i + p`` sits at input coordinate ``i + (p + 0.5)/scale - 0.5``, less than a
    pixel either side of ``i``, so its taps (those within ``radius`` of it) lie in ``i - radius ..
    i + radius``: row ``p`` weights those offsets (the one past the window gets weight 0).
    """
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    rows = []
    for p in range(scale):
        w = weight(offsets - ((p + 0.5) / scale - 0.5))
        rows.append(w / w.sum())
    return torch.stack(rows)


def lanczos_phase_kernels(scale: int, a: int) -> torch.Tensor:
    return phase_kernels(scale, a, lambda x: _lanczos(x, a))


def phase_conv_weight(kernels: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Per-phase 1-D rows (s, taps) → a grouped-convolution weight (channels·s², 1, taps, taps): output
    channel ``c·s² + py·s + px`` is phase (py, px) of input channel ``c``, the order pixel_shuffle reads,
    so ``pixel_shuffle(conv2d(replicate_pad(x, radius), weight, groups=channels), s)`` upsamples ``x``."""
    s, taps = kernels.shape
    k2 = torch.einsum("yi,xj->yxij", kernels, kernels).reshape(s * s, 1, taps, taps)
    return k2.repeat(channels, 1, 1, 1).float()


def bicubic_phase_weight(scale: int, channels: int = 3) -> torch.Tensor:
    """F.interpolate's bicubic ×``scale`` (align_corners=False, edges clamped) as a grouped conv weight
    over a 2-px replicate pad (see phase_conv_weight): equal to it within float rounding."""
    return phase_conv_weight(phase_kernels(scale, 2, _cubic), channels)


class Lanczos(nn.Module):
    """Separable Lanczos-3 ×4 as one convolution per phase followed by a pixel shuffle."""

    scale = SCALE
    multiple = 1

    def __init__(self) -> None:
        super().__init__()
        k = lanczos_phase_kernels(self.scale, LANCZOS_A)  # (s, 2a + 1)
        # 2-D kernel for output phase (py, px) is the outer product of the 1-D rows.
        self.register_buffer("kernel", phase_conv_weight(k, channels=1), persistent=False)

    def resize(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, C, H, W) → (N, C, height, width), Lanczos-3 (×4: ``forward``, the same kernel)."""
        if (height, width) == (x.shape[-2], x.shape[-1]):
            return x
        if (height, width) == (x.shape[-2] * self.scale, x.shape[-1] * self.scale):
            return self(x)
        return lanczos_resize(x, height, width).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        a = LANCZOS_A
        # Taps -a..a around each pixel: pad a on each side; replicate edges like swscale.
        xp = F.pad(x.reshape(n * c, 1, h, w), (a, a, a, a), mode="replicate")
        y = F.conv2d(xp, self.kernel.to(x.dtype))  # (n*c, s*s, h, w)
        y = F.pixel_shuffle(y, self.scale).reshape(n, c, h * self.scale, w * self.scale)
        return y.clamp(-1.0, 1.0)


def lanczos_taps(size_in: int, size_out: int, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output pixel along an axis: the ``2a`` input indices (edges replicated) and their
    Lanczos weights, rows summing to 1. Output pixel j sits at input coordinate (j + 0.5)·in/out − 0.5."""
    centre = (torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out) - 0.5
    first = torch.floor(centre).long() - a + 1
    index = first[:, None] + torch.arange(2 * a)[None, :]  # (out, 2a)
    weight = _lanczos(index.double() - centre[:, None], a)
    weight = weight / weight.sum(1, keepdim=True)
    return index.clamp(0, size_in - 1), weight.float()


def lanczos_resize(x: torch.Tensor, height: int, width: int, a: int = LANCZOS_A) -> torch.Tensor:
    """(N, C, H, W) → (N, C, height, width) with a separable Lanczos-``a`` kernel (upscaling: the kernel
    is not widened, as swscale's and PIL's are not for enlargements)."""
    h, w = x.shape[-2:]
    rows, row_w = lanczos_taps(h, height, a)
    cols, col_w = lanczos_taps(w, width, a)
    rows, row_w, cols, col_w = rows.to(x.device), row_w.to(x.device, x.dtype), cols.to(x.device), col_w.to(x.device, x.dtype)
    y = (x[..., rows, :] * row_w[:, :, None]).sum(-2)  # (N, C, height, 2a, W) weighted → (N, C, height, W)
    return (y[..., cols] * col_w).sum(-1)  # (N, C, height, width, 2a) → (N, C, height, width)


def build_bicubic() -> nn.Module:
    return Bicubic()


def build_lanczos() -> nn.Module:
    return Lanczos()

