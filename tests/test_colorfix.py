"""Colour correction: adain equals the official test.py formula; wavelet keeps sr's detail, lr's colour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr.upscale.colorfix import COLOR_FIXES, DEFAULT_COLOR_FIX, adain, adain_affine, apply_color_fix, wavelet
from vsr.errors import UsageError


def official(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """AdcSR test.py's correction, as its authors wrote the expression (per image, per channel)."""
    return (sr - sr.mean(dim=[2, 3], keepdim=True)) / sr.std(dim=[2, 3], keepdim=True) \
        * lr.std(dim=[2, 3], keepdim=True) + lr.mean(dim=[2, 3], keepdim=True)


def frames(seed: int, n: int = 2, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    sr = torch.randn(n, 3, 4 * size, 4 * size, generator=g) * 0.4 + 0.1
    lr = torch.rand(n, 3, size, size, generator=g) * 1.6 - 0.9
    return sr, lr


@pytest.mark.parametrize("seed", range(4))
def test_adain_equals_the_official_formula(seed):
    sr, lr = frames(seed)
    before = sr.clone()
    out = apply_color_fix("adain", sr, lr)
    assert torch.equal(sr, before)  # the input is not touched
    torch.testing.assert_close(out, official(sr, lr), rtol=0, atol=1e-6)  # float rounding, far below 1/255
    gain, bias = adain_affine(sr, lr)
    assert gain.shape == bias.shape == (2, 3, 1, 1)
    torch.testing.assert_close(sr * gain + bias, official(sr, lr), rtol=0, atol=1e-6)
    assert DEFAULT_COLOR_FIX == "adain"


def test_adain_guards_only_flat_channels():
    sr, lr = frames(7)
    sr[0, 1] = 0.3  # one flat channel: the official formula gives NaN there
    sr[1] = -1.0  # a whole flat (letterbox-black) frame
    assert not torch.isfinite(official(sr, lr)).all()
    out = adain(sr, lr)
    assert torch.isfinite(out).all()
    ref = official(sr, lr)
    torch.testing.assert_close(out[0, [0, 2]], ref[0, [0, 2]], rtol=0, atol=1e-6)  # the formula elsewhere
    torch.testing.assert_close(out[0, 1], lr[0, 1].mean().expand(64, 64))  # the limit: lr's mean
    torch.testing.assert_close(out[1], lr[1].mean(dim=(1, 2))[:, None, None].expand(3, 64, 64))
    flat_lr = torch.full_like(lr, 0.2)
    torch.testing.assert_close(adain(sr, flat_lr), torch.full_like(sr, 0.2))


def test_adain_half_precision_in_and_out():
    sr, lr = frames(3)
    out = adain(sr.half(), lr.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), official(sr.half().float(), lr.half().float()), rtol=2e-3, atol=2e-3)


def test_wavelet_keeps_detail_and_takes_colour():
    sr, lr = frames(1)
    # same size, same image: the bands sum back to the image
    torch.testing.assert_close(wavelet(sr, sr), sr, rtol=0, atol=1e-5)
    # a colour cast on sr is removed: the low band comes from the reference
    torch.testing.assert_close(wavelet(sr + torch.tensor([0.2, -0.1, 0.05])[:, None, None], sr), sr, rtol=0, atol=1e-5)
    # with an LR reference: sr's detail is kept, mean colour follows lr
    out = wavelet(sr, lr)
    assert out.shape == sr.shape
    up = F.interpolate(lr, size=sr.shape[-2:], mode="bicubic", align_corners=False)
    assert (out.mean(dim=(2, 3)) - up.mean(dim=(2, 3))).abs().max() < 0.05
    assert (out - out.mean(dim=(2, 3), keepdim=True) - (sr - sr.mean(dim=(2, 3), keepdim=True))).std() < sr.std()


def wavelet_as_published(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """StableSR's form: both images split into 5 à-trous bands by a depthwise 3×3 convolution,
    sr's detail bands plus lr's residual low band."""
    def split(x):
        high = torch.zeros_like(x)
        for level in range(5):
            d = 2**level
            k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).expand(3, 1, 3, 3)
            low = F.conv2d(F.pad(x, (d,) * 4, mode="replicate"), k, groups=3, dilation=d)
            high, x = high + (x - low), low
        return high, x
    ref = F.interpolate(lr, size=sr.shape[-2:], mode="bicubic", align_corners=False)
    return split(sr)[0] + split(ref)[1]


@pytest.mark.parametrize("size", [16, 5])
def test_wavelet_equals_the_published_two_chain_form(size):
    sr, lr = frames(4, size=size)  # 5 px: dilations beyond the image (replicate padding) too
    torch.testing.assert_close(wavelet(sr, lr), wavelet_as_published(sr, lr), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(COLOR_FIXES))
def test_every_fix_is_finite_on_flat_frames(name):
    sr, lr = torch.full((1, 3, 64, 96), -1.0), torch.full((1, 3, 16, 24), -1.0)
    out = apply_color_fix(name, sr, lr)
    assert out.shape == sr.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, sr)  # black stays black


def test_none_and_unknown():
    sr, lr = frames(2)
    assert apply_color_fix("none", sr, lr) is sr
    with pytest.raises(UsageError, match="unknown colour fix"):
        apply_color_fix("histogram", sr, lr)
    with pytest.raises(ValueError):
        apply_color_fix("adain", sr, lr[:1])
