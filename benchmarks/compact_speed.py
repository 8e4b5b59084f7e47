"""Speed of the compact model on this machine's CPU: model only, Upscaler, and `vsr run` end to end.

    python benchmarks/compact_speed.py [--frames 150] [--weights FILE] [--skip-e2e]

The target (issue 8): 176×144 → 704×576 at 8 frames/s or more end to end, on 2 CPU cores.
End to end = ``python -m vsr run clip.mp4 -o out.mp4 --model compact`` in a subprocess: process start,
model load, decode, upscale, colour fix, encode (libx264, the default preset), all included.
Prints a table; asserts nothing. Other load on the machine lowers every number: see the load average
printed with the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.bench.media import make_clip  # noqa: E402
from vsr.upscale.engine import Upscaler  # noqa: E402
from vsr.models import compact, load_model  # noqa: E402

SIZE = (176, 144)  # QCIF input (w, h); output 704×576
FPS = 25
WARMUP = 3  # untimed forward passes
MODEL_REPEATS = 20  # timed forward passes for the model-only figure
SIZES_480P = ((640, 480), (854, 480))  # for the GFLOPs column of the model card


@torch.inference_mode()
def model_fps(model: torch.nn.Module, channels_last: bool) -> float:
    w, h = SIZE
    x = torch.rand(1, 3, h, w) * 2 - 1
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    for _ in range(WARMUP):
        model(x)
    t = time.perf_counter()
    for _ in range(MODEL_REPEATS):
        model(x)
    return MODEL_REPEATS / (time.perf_counter() - t)


def upscaler_fps(model: torch.nn.Module, tile: int, frames: int) -> float:
    w, h = SIZE
    rng = np.random.default_rng(1)
    batch = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(frames)]
    up = Upscaler(model, device="cpu", tile=tile, color_fix="adain")
    up.upscale(batch[:WARMUP], (w * 4, h * 4))
    t = time.perf_counter()
    up.upscale(batch, (w * 4, h * 4))
    return frames / (time.perf_counter() - t)


def end_to_end(clip: Path, out: Path, frames: int, extra: list[str], threads: int, weights: Path | None) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    extra = [*extra, "--weights", str(weights)] if weights else extra
    cmd = [sys.executable, "-m", "vsr", "run", str(clip), "-o", str(out), "--model", "compact", "--device", "cpu",
           "--overwrite", "--progress", "none", *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    return frames / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--skip-e2e", action="store_true", help="model and Upscaler only")
    args = ap.parse_args()
    model = load_model("compact", args.weights)
    cfg = model.config
    print(f"compact {cfg}: {compact.count_params(model) / 1e3:.1f} k parameters; GFLOPs per frame: "
          + ", ".join(f"{w}x{h} {compact.gflops_per_frame(cfg, w, h):.2f}" for w, h in (SIZE, *SIZES_480P)))
    print(f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}, {args.frames} frames end to end")
    rows = []
    for threads in (1, 2):  # on a busy 2-core box one thread is often the faster
        torch.set_num_threads(threads)
        rows += [
            (f"model only, NCHW, {threads} thr", model_fps(load_model("compact", args.weights), False)),
            (f"model only, channels_last, {threads} thr", model_fps(load_model("compact", args.weights), True)),
            (f"Upscaler --tile 0, adain, {threads} thr", upscaler_fps(model, 0, args.frames // 3)),
            (f"Upscaler tile 128, adain, {threads} thr", upscaler_fps(model, 128, args.frames // 3)),
        ]
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "qcif.mp4"
            make_clip(clip, SIZE, args.frames, FPS)
            for threads, extra in ((1, ["--tile", "0"]), (2, ["--tile", "0"]), (1, []), (2, [])):
                name = f"vsr run {' '.join(extra) or '(default tile)'}, {threads} thr"
                fps = end_to_end(clip, Path(tmp) / "out.mp4", args.frames, extra, threads, args.weights)
                rows.append((name, fps))
    print(f"\n{'176x144 -> 704x576':<44}{'frames/s':>10}")
    for name, fps in rows:
        print(f"{name:<44}{fps:>10.1f}")
    print(f"(load average after: {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
