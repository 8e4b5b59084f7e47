"""Losses of compact training: spectral L1, a small patch discriminator, the teacher's output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import UsageError
from vsr.train.data import SCALE


class PatchDiscriminator(nn.Module):
    """Small spectral-norm patch GAN critic: one score per ~22×22 HR patch."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        chans = [3, width, width * 2, width * 4]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [sn(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        layers += [sn(nn.Conv2d(chans[-1], 1, 3, padding=1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fft_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between orthonormal 2-D spectra (real and imaginary parts)."""
    fa, fb = torch.fft.rfft2(a.float(), norm="ortho"), torch.fft.rfft2(b.float(), norm="ortho")
    return (torch.view_as_real(fa) - torch.view_as_real(fb)).abs().mean()


def teacher_forward(teacher: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The teacher's ×4 output on ``lr`` in [-1, 1], padded to its ``multiple`` and cropped back; the
    teacher's own value range (a spandrel model works in [0, 1]) is converted to and from."""
    d = teacher.descriptor
    if d.scale != SCALE:
        raise UsageError(f"the teacher {d.label} is ×{d.scale}; the student is ×{SCALE}")
    m, (h, w) = d.multiple, lr.shape[-2:]
    lo, hi = d.value_range
    x = F.pad(lr, (0, (-w) % m, 0, (-h) % m), mode="replicate")
    x = (x + 1) / 2 * (hi - lo) + lo  # [-1, 1] -> the teacher's range
    with torch.no_grad():
        y = teacher(x.to(next(iter(teacher.parameters()), x).dtype)).float()
    y = (y - lo) / (hi - lo) * 2 - 1  # back to [-1, 1]
    return y[..., : h * SCALE, : w * SCALE].clamp(-1, 1)
