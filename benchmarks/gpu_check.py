"""The engine's GPU check (issue 4, item 9): full-width AdcSR with synthetic weights on one CUDA GPU.

One prepared run, sized for a few minutes of device time:

1. Model alone, 128x128 tiles, channels_last: eager fp32 (reference), eager fp16 / bf16, fp16 with a
   CUDA graph, fp16 torch.compile'd (optionally also inside a CUDA graph). Each output is compared
   with eager fp32 on the same input (relative L2 error) and timed (ms per 128² tile, CUDA events).
   Compiled rows only at the largest batch (each shape is a new compile, a minute or more).
2. fp16 (CUDA graph) at tiles 96..192: ms per tile, per 128²-equivalent and per 1080p frame with
   the real tile plan, to settle engine.DEFAULT_TILE on the GPU.
3. The whole Upscaler on a 512x512 frame (25 tiles of 128, overlap 16): eager vs CUDA graphs vs
   compile + graphs, uint8 outputs compared, ms per tile end to end, and the NaN/OOM counters.

    python -m pytest -m cuda tests/test_engine.py -q     # the CUDA unit tests first (seconds)
    python benchmarks/gpu_check.py [--batches 1,8,32] [--no-compile] [--json $OUT/gpu_check.json]

Prints a table; exits 1 if an output disagrees beyond the tolerances below, so the run says plainly
whether the GPU paths are right. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vsr.upscale import cuda as cuda_runner
from vsr.upscale import engine
from vsr.upscale import tiling  # noqa: E402
from vsr.models import adcsr  # noqa: E402

TILE = 128  # LR px: the unit of issue 4's targets
# Relative L2 error accepted against eager fp32 on the same input, by dtype: fp16 keeps 11 significant
# bits, bf16 8 (tiny random-weight model on CPU: fp16 1.0e-2, bf16 8e-2).
REL_TOL_VS_FP32 = {"float32": 0.0, "float16": 3e-2, "bfloat16": 2e-1}
# Against eager in the same dtype: a CUDA graph replays the same kernels; compile re-fuses them.
REL_TOL_VS_EAGER = {"cuda-graph": 1e-3, "compile": 2e-2, "compile+graph": 2e-2}
UINT8_TOL = 3  # engine outputs, graphs or compile vs eager fp16, per pixel (of 255)
WARMUP, ITERS = 3, 10  # timed forwards per row after warm-up
ENGINE_FRAME = 512  # LR px square frame for the engine rows: 25 tiles of 128 at overlap 16


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def test_image(n: int, size: int, device: torch.device) -> torch.Tensor:
    """Smooth synthetic content in [-1, 1] with edges and a flat bar (the case fp16 struggles with)."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([torch.sin(6 * xx + k) * torch.cos(4 * yy - k) for k in range(3)])
    x = base[None].repeat(n, 1, 1, 1) * 0.6 + 0.1 * torch.randn(n, 3, size, size, generator=g)
    x[:, :, : size // 8] = -1.0  # letterbox bar
    return x.clamp(-1, 1).to(device)


def timed(fn, x: torch.Tensor, warmup: int, iters: int) -> tuple[torch.Tensor, float]:
    """(output, ms per forward) after warm-up: CUDA events on the GPU, wall time elsewhere."""
    for _ in range(warmup):
        y = fn(x)
    if x.device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(iters):
            y = fn(x)
        return y.clone(), (time.perf_counter() - t0) * 1000 / iters
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        y = fn(x)
    end.record()
    torch.cuda.synchronize()
    return y.clone(), start.elapsed_time(end) / iters


def model_rows(model32: torch.nn.Module, batches: list[int], do_compile: bool, device: torch.device,
               tile: int, warmup: int, iters: int) -> list[dict]:
    rows, refs = [], {}
    m16 = copy.deepcopy(model32).half()
    mbf = copy.deepcopy(model32).bfloat16()
    compiled = torch.compile(m16, dynamic=False) if do_compile else None
    for b in batches:
        x = test_image(b, tile, device).contiguous(memory_format=torch.channels_last)
        modes = [("eager", torch.float32, model32, False), ("eager", torch.float16, m16, False),
                 ("eager", torch.bfloat16, mbf, False)]
        if device.type == "cuda":
            modes += [("cuda-graph", torch.float16, m16, True)]
        if compiled is not None and b == max(batches):  # each shape compiles anew: only the largest
            modes += [("compile", torch.float16, compiled, False)]
            modes += [("compile+graph", torch.float16, compiled, True)] if device.type == "cuda" else []
        for mode, dtype, fn, graph in modes:
            if dtype == torch.float32 and b > 8:
                continue  # fp32 is the reference, not a production mode
            t0 = time.perf_counter()
            try:
                run = cuda_runner.CudaGraph(fn, x.to(dtype)) if graph else fn
                y, ms = timed(run, x.to(dtype), warmup, iters)
            except torch.OutOfMemoryError:
                rows.append({"mode": mode, "dtype": str(dtype)[6:], "batch": b, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            setup_s = time.perf_counter() - t0
            if mode == "eager":
                refs[(b, dtype)] = y
            # fp32 runs only up to batch 8: larger batches compare their first items (same inputs).
            ref_b = b if (b, torch.float32) in refs else min(k[0] for k in refs if k[1] == torch.float32)
            ref = refs[(ref_b, torch.float32)]
            n = min(ref.shape[0], y.shape[0])
            rows.append({"mode": mode, "dtype": str(dtype)[6:], "batch": b, "ms_per_forward": ms,
                         "ms_per_tile": ms / b, "rel_err_vs_fp32": rel_err(y[:n], ref[:n]),
                         "rel_err_vs_eager": 0.0 if mode == "eager" else rel_err(y, refs[(b, dtype)]),
                         "finite": bool(torch.isfinite(y).all()), "setup_s": setup_s})  # fmt: skip
    return rows


def engine_rows(model32: torch.nn.Module, device: torch.device, batch: int, do_compile: bool, tile: int,
                size: int, iters: int, precision: str) -> list[dict]:
    frame = ((test_image(1, size, torch.device("cpu"))[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    rows, ref = [], None
    configs = [("eager", False, False)]
    if device.type == "cuda":
        configs += [("cuda-graphs", True, False)] + ([("compile+graphs", True, True)] if do_compile else [])
    for name, graphs, comp in configs:
        m = copy.deepcopy(model32)
        up = engine.Upscaler(m, device=device, precision=precision, tile=tile, tile_overlap=16, batch=batch,
                             color_fix="adain", compile=comp, cuda_graphs=graphs)  # fmt: skip
        t0 = time.perf_counter()
        (out,) = up.upscale([frame], (4 * size, 4 * size))  # warm-up: capture / compile
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(iters):
            (out,) = up.upscale([frame], (4 * size, 4 * size))
        sec = (time.perf_counter() - t0) / iters
        tiles = up.plan(size, size).count
        diff = int(np.abs(out.astype(int) - ref.astype(int)).max()) if ref is not None else 0
        ref = out if ref is None else ref
        rows.append({"engine": name, "batch": batch, "ms_per_tile": sec * 1000 / tiles, "s_per_frame": sec,
                     "max_diff_vs_eager": diff, "nan_retries": up.stats.nan_retries,
                     "oom_halvings": up.stats.oom_halvings, "graph_captures": up.stats.graph_captures,
                     "setup_s": setup_s})  # fmt: skip
        del up, m
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def sweep_rows(model32: torch.nn.Module, device: torch.device, tiles: list[int], batch: int, warmup: int,
               iters: int) -> list[dict]:
    """fp16 cost per 1080p frame by tile size (CUDA graph where available): settles DEFAULT_TILE."""
    m16, rows = copy.deepcopy(model32).half(), []
    for t in tiles:
        x = test_image(batch, t, device).half().contiguous(memory_format=torch.channels_last)
        try:
            run = cuda_runner.CudaGraph(m16, x) if device.type == "cuda" else m16
            _, ms = timed(run, x, warmup, iters)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            continue
        plan = tiling.make_plan(1080, 1920, tile=t, overlap=engine.DEFAULT_TILE_OVERLAP, multiple=16, scale=4)
        rows.append({"tile": t, "batch": batch, "ms_per_tile": ms / batch, "ms_per_128": ms / batch * (TILE / t) ** 2,
                     "tiles_per_1080p": plan.count, "ms_per_1080p": ms / batch * plan.count})  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--engine-batch", type=int, default=32)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--tile-sweep", default="96,128,160,192", help="fp16 tile sizes for the per-frame cost")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="exercise this script on the CPU with adcsr-tiny, small tiles, no graphs (no timings)")
    a = ap.parse_args()
    smoke = a.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to check (--cpu-smoke exercises the script)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if smoke else "cuda")
    cfg, tile, size = (adcsr.TINY, 32, 64) if smoke else (adcsr.FULL, TILE, ENGINE_FRAME)
    batches = [1, 2] if smoke else [int(b) for b in a.batches.split(",")]
    warmup, iters = (1, 1) if smoke else (WARMUP, ITERS)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    with torch.device(device):
        model32 = adcsr.AdcSR(cfg).eval().requires_grad_(False)
    model32 = model32.to(memory_format=torch.channels_last)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU smoke run (adcsr-tiny)"
    print(f"{name}, torch {torch.__version__}, AdcSR {'tiny' if smoke else 'full width'}, random weights, {tile}² tiles")
    with torch.inference_mode():
        rows = model_rows(model32, batches, not a.no_compile and not smoke, device, tile, warmup, iters)
        srows = sweep_rows(model32, device, [32, 48] if smoke else [int(t) for t in a.tile_sweep.split(",")],
                           2 if smoke else a.engine_batch, warmup, iters)  # fmt: skip
        erows = engine_rows(model32, device, 2 if smoke else a.engine_batch, not a.no_compile, tile, size,
                            iters, "bf16" if smoke else "fp16")  # fmt: skip
    bad = []
    print("\nmode           dtype     batch  ms/forward  ms/tile  rel.err vs fp32  vs eager  finite  setup s")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<14} {r['dtype']:<9} {r['batch']:>5}  {r['error']}")
            continue
        ok = (r["finite"] and r["rel_err_vs_fp32"] <= REL_TOL_VS_FP32[r["dtype"]]
              and r["rel_err_vs_eager"] <= REL_TOL_VS_EAGER.get(r["mode"], 0.0))  # fmt: skip
        bad += [] if ok else [r]
        print(f"{r['mode']:<14} {r['dtype']:<9} {r['batch']:>5} {r['ms_per_forward']:>11.2f} {r['ms_per_tile']:>8.2f}"
              f" {r['rel_err_vs_fp32']:>16.2e} {r['rel_err_vs_eager']:>9.2e}  {str(r['finite']):<6}"
              f" {r['setup_s']:>8.1f}{'' if ok else '  FAIL'}")
    print(f"\ntile sweep (fp16{', CUDA graph' if device.type == 'cuda' else ''})  batch  ms/tile  ms/128²"
          "  tiles/1080p  ms/1080p frame")
    for r in srows:
        print(f"{r['tile']:>31} {r['batch']:>6} {r['ms_per_tile']:>8.2f} {r['ms_per_128']:>8.2f}"
              f" {r['tiles_per_1080p']:>12} {r['ms_per_1080p']:>15.1f}")
    print(f"\nengine ({size}x{size} frame, {'bf16' if smoke else 'fp16'}, adain)  batch  ms/tile  s/frame  max diff vs eager  nan  oom  graphs  setup s")
    for r in erows:
        ok = r["max_diff_vs_eager"] <= UINT8_TOL
        bad += [] if ok else [r]
        print(f"{r['engine']:<36} {r['batch']:>5} {r['ms_per_tile']:>8.2f} {r['s_per_frame']:>8.3f}"
              f" {r['max_diff_vs_eager']:>18} {r['nan_retries']:>4} {r['oom_halvings']:>4} {r['graph_captures']:>7}"
              f" {r['setup_s']:>8.1f}{'' if ok else '  FAIL'}")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "model": rows,
                                            "tile_sweep": srows, "engine": erows}, indent=1))  # fmt: skip
    print("\nOK: every GPU path agrees within tolerance" if not bad else f"\nFAILED: {len(bad)} row(s) out of tolerance")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
