"""Temporal stability: how much each model's output changes frame to frame, against bicubic.

For a clip, each model upscales every frame (the Upscaler, as ``vsr run`` does, but without colour
fix by default: adain alone raises the change of a bicubic output by about 4-6% here, so
``--color-fix adain`` measures what ``vsr run`` writes, the default the model itself; no encode: the
codec's own flicker stays out). The metric is the mean absolute frame-to-frame change
of the output, ``mean |out[t+1] - out[t]|`` in 8-bit levels over all pixels and pairs, divided by the
same figure for a plain bicubic ×4 upscale of the input (torch, no engine). A ratio of 1 means the
model moves exactly as much as the input does; above 1, the model adds flicker (detail that changes
from frame to frame); below 1, it smooths motion away. This is the baseline for later temporal work.

    python benchmarks/flicker.py                              # generated clip, CPU models
    python benchmarks/flicker.py --input clip.mp4 --models compact,adcsr --device cuda

Models that need weights run with random weights when none are found (said in the table): such a
figure measures the architecture's behaviour, not the released model's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.upscale import convert, engine  # noqa: E402
from vsr.upscale import device as device_mod  # noqa: E402
from vsr.bench.run import load  # noqa: E402
from vsr.bench.media import make_clip  # noqa: E402


def temporal_change(frames: Sequence[np.ndarray]) -> float:
    """Mean absolute change between consecutive frames, in 8-bit levels (uint16 scaled down)."""
    if len(frames) < 2:
        raise ValueError("need at least two frames")
    scale = 255.0 / 65535.0 if frames[0].dtype == np.uint16 else 1.0
    total = 0.0
    for a, b in zip(frames, frames[1:]):
        total += float(np.abs(b.astype(np.float32) - a.astype(np.float32)).mean())
    return total / (len(frames) - 1) * scale


def bicubic_reference(frames: Sequence[np.ndarray], out_size: tuple[int, int]) -> list[np.ndarray]:
    """Plain bicubic upscale of each frame to ``out_size`` (w, h), rounded to the input dtype."""
    out = []
    for f in frames:
        t = convert.to_tensor(f, torch.device("cpu"))
        y = F.interpolate(t, size=(out_size[1], out_size[0]), mode="bicubic", align_corners=False)
        out.append(convert.to_array(y, f.dtype))
    return out


def flicker(frames: Sequence[np.ndarray], model: torch.nn.Module, device: str = "cpu", precision: str = "auto",
            color_fix: str = "none", tile: int | None = None) -> dict:
    """{'model_change', 'bicubic_change', 'ratio'} for ``model`` on ``frames`` (RGB arrays)."""
    up = engine.Upscaler(model, device=device, precision=precision, color_fix=color_fix,
                         tile=engine.DEFAULT_TILE if tile is None else tile)
    h, w = frames[0].shape[:2]
    size = (w * up.scale, h * up.scale)
    out = [up.upscale([f], size)[0] for f in frames]
    ref = temporal_change(bicubic_reference(frames, size))
    got = temporal_change(out)
    return {"model_change": got, "bicubic_change": ref, "ratio": got / ref if ref > 0 else float("nan")}


def main() -> None:
    from vsr.media.decode import read_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bicubic,lanczos,compact,adcsr-tiny")
    ap.add_argument("--input", type=Path, help="clip (default: a generated 96x64 clip with motion)")
    ap.add_argument("--frames", type=int, default=8, help="frames of the clip used (from the start)")
    ap.add_argument("--size", default="96x64", help="WxH of the generated clip")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--color-fix", default="none", choices=["none", "adain", "wavelet"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        clip = a.input
        if clip is None:
            clip = Path(tmp) / "clip.mp4"
            make_clip(clip, tuple(map(int, a.size.split("x"))), a.frames)
        frames = read_rgb(clip)[: a.frames]
    device = device_mod.resolve_device(a.device)
    dtype = device_mod.resolve_precision(a.precision, device)
    print(f"clip {frames[0].shape[1]}x{frames[0].shape[0]}, {len(frames)} frames"
          f" ({a.input or 'generated'}); device {device}; colour fix {a.color_fix}; change in 8-bit levels per pixel")
    print(f"{'model':<12} {'out change':>11} {'bicubic change':>15} {'ratio':>7}  note")
    for name in a.models.split(","):
        model, why = load(name, None, device, dtype)
        r = flicker(frames, model, str(device), a.precision, a.color_fix)
        print(f"{name:<12} {r['model_change']:>11.3f} {r['bicubic_change']:>15.3f} {r['ratio']:>7.3f}  {why}")


if __name__ == "__main__":
    main()
