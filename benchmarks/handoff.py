"""Hand-off to the encoder: RGB frames converted by swscale (what vsr does) against YUV planes converted
by vsr in one torch step, per frame at output sizes, on this machine's CPU.

What is timed, per frame, from the engine's finished float frame (3, H, W) in [-1, 1] to an
``av.VideoFrame`` in yuv420p ready for the encoder (BT.709, limited range):

- ``quantise``: vsr's quantise() to (H, W, 3) uint8 from a planar (N, C, H, W) float frame, and
  ``(NHWC)`` from a channels_last one (compact's output layout: the transpose is free);
- ``swscale``: vsr.media.color.YuvConverter on that (from_ndarray and swscale with vsr's
  accurate-rounding, full-chroma flags), ``(fast)`` with swscale's default flags (ffmpeg's CLI's);
  ``rgb total``: quantise (planar) + swscale, vsr's path;
- ``yuv in torch``: one matrix step to Y, Cb, Cr in float, chroma averaged 2×2, each plane
  quantised, packed into one yuv420p buffer and handed over with from_ndarray.

Also the libx264 (medium, 2 threads) encode of such a frame, the floor both paths sit on.

    python benchmarks/handoff.py [--sizes 1280x720,1920x1080,3840x2160] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import VideoReformatter

from vsr.bench.measure import repeat_times
from vsr.media.color import ColorTags, YuvConverter
from vsr.upscale.convert import quantise

KR, KB = 0.2126, 0.0722  # BT.709 luma coefficients


def timed(fn, repeats: int) -> float:
    """Mean milliseconds per call after a warm-up call."""
    return statistics.fmean(repeat_times(fn, repeats)[0]) * 1000


def yuv420_in_torch(chw: torch.Tensor) -> av.VideoFrame:
    """(3, H, W) in [-1, 1] → yuv420p VideoFrame, BT.709 limited range, chroma centred 2×2 means."""
    _, h, w = chw.shape
    rgb = chw.add(1).mul_(0.5)  # [0, 1]
    r, g, b = rgb
    y = (KR * r).add_(g, alpha=1 - KR - KB).add_(b, alpha=KB)  # (H, W)
    half = F.avg_pool2d(rgb[None], 2)[0]  # (3, H/2, W/2): chroma from the 2×2 mean (linear: same thing)
    yh = KR * half[0] + (1 - KR - KB) * half[1] + KB * half[2]
    cb = (half[2] - yh).mul_(224 / (2 * (1 - KB))).add_(128.5)
    cr = (half[0] - yh).mul_(224 / (2 * (1 - KR))).add_(128.5)
    buf = torch.empty(h * w * 3 // 2, dtype=torch.uint8)
    buf[: h * w].view(h, w).copy_(y.mul_(219).add_(16.5).clamp_(0, 255))
    buf[h * w : h * w * 5 // 4].view(h // 2, w // 2).copy_(cb.clamp_(0, 255))
    buf[h * w * 5 // 4 :].view(h // 2, w // 2).copy_(cr.clamp_(0, 255))
    return av.VideoFrame.from_ndarray(buf.numpy().reshape(h * 3 // 2, w), format="yuv420p")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1280x720,1920x1080,3840x2160")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, PyAV {av.__version__}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'output':>10} {'quantise':>9} {'(NHWC)':>7} {'swscale':>8} {'(fast)':>7} {'rgb total':>10} "
          f"{'yuv in torch':>13} {'x264 encode':>12}   ms/frame")
    tags = ColorTags(colorspace=1, color_range=1, color_primaries=1, color_trc=1)  # BT.709 limited
    for size in a.sizes.split(","):
        w, h = map(int, size.split("x"))
        # A smooth frame with detail, as a model's output looks (not noise: encoders behave differently)
        yy, xx = torch.meshgrid(torch.linspace(0, 8, h), torch.linspace(0, 14, w), indexing="ij")
        sr = torch.stack([torch.sin(xx) * torch.cos(yy), torch.sin(xx + yy), torch.cos(2 * xx - yy)]) * 0.8
        convert = YuvConverter(tags, "yuv420p", h)
        fast = VideoReformatter()
        u8 = np.dtype(np.uint8)
        q_ms = timed(lambda: quantise(sr, u8), a.repeats)
        nhwc = sr[None].contiguous(memory_format=torch.channels_last)[0]  # as compact's output is laid out
        qn_ms = timed(lambda: quantise(nhwc, u8), a.repeats)
        image = quantise(sr, u8).numpy()
        sws_ms = timed(lambda: convert(image), a.repeats)
        fast_ms = timed(lambda: fast.reformat(av.VideoFrame.from_ndarray(image, format="rgb24"), format="yuv420p"),
                        a.repeats)
        torch_ms = timed(lambda: yuv420_in_torch(sr), a.repeats)
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25)
        enc.options = {"preset": "medium", "crf": "18", "threads": "2"}
        moving = [convert(quantise(torch.roll(sr, 5 * i, dims=2), np.dtype(np.uint8)).numpy()) for i in range(8)]
        n = max(a.repeats, 30)  # past x264's lookahead, so frames come out
        t0 = time.perf_counter()
        for i in range(n):
            frame = moving[i % len(moving)]
            frame.pts = i
            enc.encode(frame)
        enc.encode(None)
        enc_ms = (time.perf_counter() - t0) / n * 1000
        # agreement of the two conversions: luma plane, levels of 255
        ya = np.asarray(convert(quantise(sr, np.dtype(np.uint8)).numpy()).planes[0]).reshape(h, -1)[:, :w]
        yb = np.asarray(yuv420_in_torch(sr).planes[0]).reshape(h, -1)[:, :w]
        diff = np.abs(ya.astype(int) - yb.astype(int)).max()
        print(f"{size:>10} {q_ms:>9.1f} {qn_ms:>7.1f} {sws_ms:>8.1f} {fast_ms:>7.1f} {q_ms + sws_ms:>10.1f} "
              f"{torch_ms:>13.1f} {enc_ms:>12.1f}   (luma max diff {diff})")


if __name__ == "__main__":
    main()
