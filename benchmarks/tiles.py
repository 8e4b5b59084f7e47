"""Tile size and batch size against cost per output pixel: the table behind engine.DEFAULT_TILE.

For each model, tile size and batch size it times the model alone on random tiles (ms per forward,
per tile, per 128x128 tile-equivalent) and works out what a frame of ``--frame`` costs with that
tile: tiles per frame from the real tile plan (vsr.upscale.tiling), the overlap overhead (tile pixels
computed / frame pixels) and the model time per frame. With ``--e2e`` it also runs the whole
Upscaler on one frame, so the engine's own cost (pad, cut, blend, resize, quantise) shows as the
gap between "engine s/frame" and "model s/frame". Random weights: speed only, never quality.

    python benchmarks/tiles.py                                   # CPU: classic models + adcsr-tiny
    python benchmarks/tiles.py --models adcsr --device cuda --precision fp16 --batch 1,8,32

Prints a table (and --json rows); never asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vsr.upscale import device as device_mod
from vsr.upscale import engine
from vsr.upscale import tiling  # noqa: E402
from vsr.bench.measure import sync  # noqa: E402
from vsr.models import MODELS  # noqa: E402

REFERENCE_TILE = 128  # LR px: costs are also given per 128x128 tile-equivalent (issue 4's unit)


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int, min_seconds: float) -> float:
    """Median seconds per forward after one warm-up; repeats until ``min_seconds`` or ``repeats``."""
    with torch.inference_mode():
        model(x)
        sync(x.device)
        times: list[float] = []
        while len(times) < repeats and (not times or sum(times) < min_seconds or len(times) < 2):
            t0 = time.perf_counter()
            model(x)
            sync(x.device)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bicubic,lanczos,adcsr-tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tiles", default="64,96,128,192,256", help="LR tile sizes")
    ap.add_argument("--overlap", type=int, default=engine.DEFAULT_TILE_OVERLAP)
    ap.add_argument("--batch", default="1", help="batch sizes, comma-separated")
    ap.add_argument("--frame", default="1920x1080", help="LR frame size for the per-frame columns")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=1.0, help="stop repeating after this much time")
    ap.add_argument("--e2e", action="store_true", help="also time the whole Upscaler on one frame")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)  # on a shared, loaded CPU one thread times far more steadily
    device = device_mod.resolve_device(a.device)
    dtype = device_mod.resolve_precision(a.precision, device)
    fw, fh = map(int, a.frame.split("x"))
    torch.manual_seed(0)
    rows = []
    for name in a.models.split(","):
        model = MODELS[name].build().to(device, dtype).eval()
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        for tile in map(int, a.tiles.split(",")):
            plan = tiling.make_plan(fh, fw, tile=tile, overlap=a.overlap, multiple=model.multiple, scale=model.scale)
            overhead = plan.count * plan.tile_h * plan.tile_w / (fh * fw)
            for batch in map(int, a.batch.split(",")):
                x = torch.rand(batch, 3, plan.tile_h, plan.tile_w, device=device, dtype=dtype) * 2 - 1
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                try:
                    sec = time_forward(model, x, a.repeats, a.min_seconds)
                except torch.OutOfMemoryError:
                    print(f"{name} tile {tile} batch {batch}: out of memory", file=sys.stderr)
                    continue
                ms_tile = sec * 1000 / batch
                rows.append({
                    "model": name, "tile_arg": tile, "device": str(device), "precision": {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype],
                    "tile": plan.tile_h, "batch": batch, "ms_forward": sec * 1000, "ms_per_tile": ms_tile,
                    "ms_per_128": ms_tile * (REFERENCE_TILE**2) / (plan.tile_h * plan.tile_w),
                    "tiles_per_frame": plan.count, "overlap_overhead": overhead,
                    "model_s_per_frame": ms_tile * plan.count / 1000,
                })  # fmt: skip
                if a.e2e:
                    up = engine.Upscaler(model, device=device, precision=a.precision, tile=tile,
                                         tile_overlap=a.overlap, batch=batch)  # fmt: skip
                    frame = np.random.default_rng(0).integers(0, 256, (fh, fw, 3), dtype=np.uint8)
                    t0 = time.perf_counter()
                    up.upscale([frame], (fw * model.scale, fh * model.scale))
                    rows[-1]["engine_s_per_frame"] = time.perf_counter() - t0
        del model
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"frame {fw}x{fh} LR, overlap {a.overlap} LR px; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))  # fmt: skip
    print(f"torch threads {torch.get_num_threads()}")
    head = "model        prec   tile batch  ms/fwd   ms/tile  ms/128²  tiles/frame  overhead  model s/frame"
    print(head + ("  engine s/frame" if a.e2e else ""))
    for r in rows:
        tile = r["tile"] if r["tile_arg"] else "whole"
        line = (f"{r['model']:<12} {r['precision']:<5} {tile:>5} {r['batch']:>5} {r['ms_forward']:>7.1f}"
                f" {r['ms_per_tile']:>9.2f} {r['ms_per_128']:>8.2f} {r['tiles_per_frame']:>12} {r['overlap_overhead']:>9.2f}"
                f" {r['model_s_per_frame']:>14.2f}")  # fmt: skip
        if "engine_s_per_frame" in r:
            line += f" {r['engine_s_per_frame']:>15.2f}"
        print(line)


if __name__ == "__main__":
    main()
