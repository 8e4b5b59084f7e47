"""The media side of ``vsr bench``: the generated test clip, and decode, colour conversion and encode
timed on their own, so the per-stage table can name what the threaded pipeline hides."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from vsr.media.color import RgbConverter
from vsr.media.decode import VideoReader


def clip_size(model: str, device: torch.device) -> tuple[tuple[int, int], int]:
    """((w, h), frames) of the generated clip: 480p on CUDA; small on CPU, smaller for AdcSR."""
    if device.type == "cuda":
        return (854, 480), 24
    if model.startswith("adcsr"):
        return (128, 96), 4
    return (176, 144), 8


def make_clip(path: Path, size: tuple[int, int], frames: int, fps: int = 25) -> None:
    """H.264 clip with motion and texture (a noise field sliding over gradients)."""
    w, h = size
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(h * 2, w * 2, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, fps)
        for i in range(frames):
            oy, ox = i % h, (2 * i) % w
            base = np.stack([xx * 127 // w, yy * 127 // h, (xx + yy + i) % 128], -1).astype(np.uint8)
            img = texture[oy : oy + h, ox : ox + w] // 2 + base
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))


def encode_alone(images: list[np.ndarray], path: Path, fps: int = 25) -> tuple[float, float]:
    """(wall s, process CPU s) to encode ``images`` as ``vsr run`` does by default (libx264, preset
    medium, crf 18, yuv420p), RGB→YUV conversion and the final flush included. The pipeline's encode
    thread only times ``write()``: x264 works in its own threads and holds frames for its lookahead,
    so most of its work lands in other threads or in the flush at close, outside that timer."""
    h, w = images[0].shape[:2]
    t0, c0 = time.perf_counter(), time.process_time()
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "medium"})
        s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        for i, img in enumerate(images):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: h - h % 2, : w - w % 2]), format="rgb24")
            f.pts = i
            out.mux(s.encode(f.reformat(format="yuv420p")))
        out.mux(s.encode(None))
    return time.perf_counter() - t0, time.process_time() - c0


def decode_split(path: Path) -> tuple[list[np.ndarray], float, float]:
    """RGB frames of ``path``, seconds of decode alone and of the colour conversion (the reader's
    RgbConverter) alone, timed apart in one pass."""
    with VideoReader(path) as r:
        info = r.info
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
    t_decode = time.perf_counter() - t0
    convert = RgbConverter(info.color, info.bit_depth)
    t0 = time.perf_counter()
    frames = [convert(vf) for vf in decoded]
    return frames, t_decode, time.perf_counter() - t0
