"""The steps of the prepared GPU session (issue 18), one per call, each writing its own JSON-lines file.

benchmarks/gpu_session.sh runs them in order, each under its own timeout, so a step that overruns
or crashes loses only itself; every row is flushed as it is measured. AdcSR at full width with random
weights (speed and agreement only). ``--cpu``: the same steps on the CPU with adcsr-tiny and small
sizes (a rehearsal: timings meaningless); ``--smoke``: one row per step.

    python3 benchmarks/gpu_session.py STEP --out DIR [--cpu] [--smoke]
    STEP: env | adcsr | groupnorm | tiles | bench | compile | summary

Needs torch, numpy and, for ``bench`` only, PyAV; never Ray (the lent machine has none).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repo is copied to the lent machine, not installed
from vsr.models import adcsr  # noqa: E402
from vsr.upscale import cuda as cuda_graphs  # noqa: E402
from vsr.upscale import tiling  # noqa: E402
from vsr.upscale.device import exact_fp32  # noqa: E402

TILE = 128  # LR px: the unit of the targets (ms per 128² tile)
FILES = {"env": "env.jsonl", "adcsr": "adcsr.jsonl", "groupnorm": "groupnorm.jsonl", "tiles": "tiles.jsonl",
         "bench": "bench.jsonl", "compile": "compile.jsonl", "summary": "summary.txt"}  # + cuda_tests.txt: 8


class Rows:
    """Append JSON lines to one file, flushed per row (a killed step keeps what it measured)."""

    def __init__(self, path: Path) -> None:
        self.f = path.open("a", encoding="utf-8")

    def __call__(self, **row: object) -> None:
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()
        print(json.dumps(row), flush=True)


def setting(a: argparse.Namespace) -> dict:
    """Sizes by mode: the lent GPU, the CPU rehearsal, the smoke test."""
    if not a.cpu:
        return dict(device=torch.device("cuda"), cfg=adcsr.FULL, tile=TILE, batches=[8, 16, 32], repeats=3, iters=10,
                    sweep=[96, 128, 160, 192], sweep_batch=16, gn=[(16, 320, 64, 64), (16, 640, 32, 32)],
                    clip="854x480", frames=96, compile_batch=16)
    small = dict(device=torch.device("cpu"), cfg=adcsr.TINY, tile=32, batches=[1, 2], repeats=2, iters=1,
                 sweep=[32, 48], sweep_batch=2, gn=[(2, 96, 32, 32)], clip="96x64", frames=4, compile_batch=2)
    if a.smoke:
        small.update(batches=[1], repeats=1, sweep=[32], gn=[(1, 96, 16, 16)], frames=2, clip="64x48")
    return small


def test_input(n: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Smooth content in [-1, 1] with a flat letterbox bar (what fp16 struggles with), channels_last."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([torch.sin(6 * xx + k) * torch.cos(4 * yy - k) for k in range(3)])
    x = base[None].repeat(n, 1, 1, 1) * 0.6 + 0.1 * torch.randn(n, 3, size, size, generator=g)
    x[:, :, : size // 8] = -1.0
    return x.clamp(-1, 1).to(device, dtype).contiguous(memory_format=torch.channels_last)


def times_ms(fn, x: torch.Tensor, iters: int, repeats: int) -> list[float]:
    """ms per call, one value per repeat (CUDA events; wall time on a CPU), after a warm-up call."""
    fn(x)
    out = []
    for _ in range(repeats):
        if x.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn(x)
            end.record()
            torch.cuda.synchronize()
            out.append(start.elapsed_time(end) / iters)
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn(x)
            out.append((time.perf_counter() - t0) * 1000 / iters)
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def build(s: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(s["device"]):
        model = adcsr.AdcSR(s["cfg"]).eval().requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


def step_env(a: argparse.Namespace, row: Rows) -> None:
    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                  "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                  "float32_matmul_precision": torch.get_float32_matmul_precision()}
    for name in ("av", "ray", "numpy", "safetensors", "yaml"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                    capability=f"{p.major}.{p.minor}")
        try:
            q = "clocks.sm,clocks.max.sm,clocks.mem,power.limit,driver_version,persistence_mode"
            done = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                                  text=True, timeout=10)
            info["nvidia_smi"] = done.stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            info["nvidia_smi"] = f"unavailable: {e}"
    device = setting(a)["device"]
    for dtype in (torch.float16, torch.float32):
        x = torch.randn(2, 64, 16, 16, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        y = F.group_norm(x, 32)
        info[f"group_norm_keeps_channels_last_{str(dtype)[6:]}"] = y.is_contiguous(memory_format=torch.channels_last)
    row(**info)


def step_adcsr(a: argparse.Namespace, row: Rows) -> None:
    """ms per tile: eager fp16 / bf16 and CUDA graph fp16 per batch (median, spread of repeats), and
    agreement with fp32 (TF32 off) on the same input."""
    s = setting(a)
    m32 = build(s)
    models = {"float16": copy.deepcopy(m32).half(), "bfloat16": copy.deepcopy(m32).bfloat16()}
    with torch.inference_mode():
        for b in s["batches"]:
            x32 = test_input(b, s["tile"], s["device"], torch.float32)
            with exact_fp32():
                ref = m32(x32[: min(b, 8)])  # the reference: at most 8 tiles (same inputs as the others' first)
            modes = [("eager", "float16"), ("eager", "bfloat16")]
            modes += [("cuda-graph", "float16")] if s["device"].type == "cuda" else []
            for mode, dt in modes:
                x = x32.to(getattr(torch, dt))
                try:
                    fn = cuda_graphs.CudaGraph(models[dt], x) if mode == "cuda-graph" else models[dt]
                    ms = times_ms(fn, x, s["iters"], s["repeats"])
                    y = fn(x)
                except torch.OutOfMemoryError as e:
                    row(mode=mode, dtype=dt, batch=b, error=f"out of memory: {e}".splitlines()[0])
                    torch.cuda.empty_cache()
                    continue
                med = statistics.median(ms)
                row(mode=mode, dtype=dt, batch=b, ms_per_tile=med / b, spread_ms_per_tile=(max(ms) - min(ms)) / b,
                    repeats=len(ms), rel_err_vs_fp32=rel_err(y[: ref.shape[0]], ref), finite=bool(torch.isfinite(y).all()))
            if a.smoke:
                return


def step_groupnorm(a: argparse.Namespace, row: Rows) -> None:
    """GroupNorm in fp16 natively against the fp32 upcast vsr's AdcSR uses: time and error vs fp64."""
    s = setting(a)
    for shape in s["gn"]:
        x = (torch.randn(shape, device=s["device"]) * 3 + 1).half().contiguous(memory_format=torch.channels_last)
        ref = F.group_norm(x.double(), 32)
        native = lambda t: F.group_norm(t, 32)  # noqa: E731
        upcast = lambda t: F.group_norm(t.float(), 32).half()  # noqa: E731
        for name, fn in (("native fp16", native), ("fp32 upcast", upcast)):
            try:
                ms = times_ms(fn, x, s["iters"] * 5, s["repeats"])
                err = float((fn(x).double() - ref).abs().max())
            except RuntimeError as e:  # a CPU build without fp16 group_norm
                row(shape=list(shape), variant=name, error=str(e).splitlines()[0])
                continue
            row(shape=list(shape), variant=name, ms=statistics.median(ms), max_abs_err=err,
                keeps_channels_last=fn(x).is_contiguous(memory_format=torch.channels_last))


def step_tiles(a: argparse.Namespace, row: Rows) -> None:
    """fp16 (CUDA graph on a GPU) by tile size: ms per tile, per 128², per 1080p frame with the real plan."""
    s = setting(a)
    m16 = build(s).half() if s["device"].type == "cuda" else build(s)
    with torch.inference_mode():
        for t in s["sweep"]:
            x = test_input(s["sweep_batch"], t, s["device"], next(m16.parameters()).dtype)
            try:
                fn = cuda_graphs.CudaGraph(m16, x) if s["device"].type == "cuda" else m16
                ms = statistics.median(times_ms(fn, x, s["iters"], s["repeats"]))
            except torch.OutOfMemoryError as e:
                row(tile=t, error=f"out of memory: {e}".splitlines()[0])
                torch.cuda.empty_cache()
                continue
            plan = tiling.make_plan(1080, 1920, tile=t, overlap=tiling.DEFAULT_TILE_OVERLAP, multiple=16, scale=4)
            per = ms / s["sweep_batch"]
            row(tile=t, batch=s["sweep_batch"], ms_per_tile=per, ms_per_128=per * (TILE / t) ** 2,
                tiles_per_1080p=plan.count, ms_per_1080p=per * plan.count)


def step_bench(a: argparse.Namespace, row: Rows) -> None:
    """`vsr bench` on a generated clip: pipeline fps against model-only fps, the encoder named."""
    s = setting(a)
    model = "adcsr" if not a.cpu else "adcsr-tiny"
    cmd = [sys.executable, "-m", "vsr", "bench", "--model", model, "--device", s["device"].type, "--size", s["clip"],
           "--frames", str(s["frames"]), "--repeats", "1", "--json"]
    cmd += ["--precision", "fp16", "--batch", "16"] if not a.cpu else ["--tile", "32", "--no-official"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        row(error=f"vsr bench exited {done.returncode}", stderr=done.stderr[-1500:])
        return
    for r in json.loads(done.stdout):  # the chosen setting, then the official-style baseline
        row(**r)


def step_compile(a: argparse.Namespace, row: Rows) -> None:
    """torch.compile fp16 (bf16 on a CPU) at one batch size, alone and inside a CUDA graph, against eager."""
    s = setting(a)
    dtype = torch.float16 if s["device"].type == "cuda" else torch.bfloat16
    m = build(s).to(dtype)
    b = s["compile_batch"]
    x = test_input(b, s["tile"], s["device"], dtype)
    with torch.inference_mode():
        eager = m(x)
        # On the GPU, inductor. The smoke test and the CPU rehearsal take Dynamo's tracing only ("eager":
        # no code generation), since inductor's C++ build of adcsr-tiny takes over the step's minute on 2 cores.
        backend = "inductor" if s["device"].type == "cuda" and not a.smoke else "eager"
        compiled = torch.compile(m, dynamic=False, backend=backend)
        modes = [("compile", False)] + ([("compile+graph", True)] if s["device"].type == "cuda" else [])
        for mode, graph in modes:
            t0 = time.perf_counter()
            try:
                fn = cuda_graphs.CudaGraph(compiled, x) if graph else compiled
                y = fn(x)
                setup = time.perf_counter() - t0
                ms = statistics.median(times_ms(fn, x, s["iters"], s["repeats"]))
            except Exception as e:  # noqa: BLE001 - a failed compile is a result to report, not a crash
                row(mode=mode, batch=b, error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
                continue
            row(mode=mode, dtype=str(dtype)[6:], batch=b, backend=backend, ms_per_tile=ms / b, setup_s=setup,
                rel_err_vs_eager=rel_err(y, eager))


def read(out: Path, step: str) -> list[dict]:
    path = out / FILES[step]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_summary(a: argparse.Namespace, out: Path) -> None:
    lines = [f"GPU session summary ({'CPU rehearsal, timings meaningless' if a.cpu else 'lent GPU'})"]
    env = read(out, "env")
    if env:
        e = env[0]
        lines.append(f"{e.get('gpu', 'CPU')}, torch {e['torch']}, CUDA {e['cuda']}, cuDNN {e['cudnn']}, "
                     f"TF32 matmul {e['tf32_matmul']} / cuDNN {e['tf32_cudnn']}, av {e['av']}, ray {e['ray']}")
    lines.append(f"steps (exit codes; 124 = timed out): {a.steps or '?'}")
    lines.append("\nAdcSR        dtype     batch  ms/tile  ±spread  rel.err vs fp32")
    for r in read(out, "adcsr"):
        lines.append(f"{r['mode']:<12} {r['dtype']:<9} {r['batch']:>5}  " + (r["error"] if "error" in r else
                     f"{r['ms_per_tile']:>7.2f} {r['spread_ms_per_tile']:>8.2f} {r['rel_err_vs_fp32']:>16.2e}"))
    for r in read(out, "compile"):
        lines.append(f"{r['mode']:<12} {r.get('dtype', ''):<9} {r['batch']:>5}  " + (r["error"] if "error" in r else
                     f"{r['ms_per_tile']:>7.2f} {'':>8} (vs eager {r['rel_err_vs_eager']:.2e}, setup {r['setup_s']:.0f} s)"))
    lines.append("\nGroupNorm shape              variant       ms     max err")
    for r in read(out, "groupnorm"):
        lines.append(f"{str(r['shape']):<28} {r['variant']:<12} " + (r["error"] if "error" in r else
                     f"{r['ms']:>6.3f} {r['max_abs_err']:>10.2e}"))
    lines.append("\ntile  ms/tile  ms/128²  tiles/1080p  ms/1080p")
    for r in read(out, "tiles"):
        lines.append(f"{r['tile']:>4}  " + (r["error"] if "error" in r else f"{r['ms_per_tile']:>7.2f} "
                     f"{r['ms_per_128']:>8.2f} {r['tiles_per_1080p']:>12} {r['ms_per_1080p']:>9.1f}"))
    lines.append("\nvsr bench: model fps, pipeline fps, efficiency, ms/tile, filler tiles")
    for r in read(out, "bench"):
        lines.append("  " + (f"error: {r['error']}" if "error" in r else
                     f"{r['model']} {r['precision']} batch {r['batch']}: {r['model_fps']:.2f}, {r['pipeline_fps']:.2f}, "
                     f"{r['pipeline_efficiency']:.2f}, {r['ms_per_tile']:.2f}, {r.get('filler_tiles')}"))
    text = "\n".join(lines)
    (out / FILES["summary"]).write_text(text + "\n")
    print(text)


STEPS = {"env": step_env, "adcsr": step_adcsr, "groupnorm": step_groupnorm, "tiles": step_tiles,
         "bench": step_bench, "compile": step_compile}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=[*STEPS, "summary"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu", action="store_true", help="rehearse on the CPU with adcsr-tiny (timings meaningless)")
    ap.add_argument("--smoke", action="store_true", help="one row per step (with --cpu: the suite's smoke test)")
    ap.add_argument("--steps", default="", help="summary: the steps' exit codes, as the session script saw them")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if not a.cpu and not torch.cuda.is_available():
        print("gpu_session: no CUDA device (use --cpu to rehearse)", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    if a.cpu:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    if a.step == "summary":
        step_summary(a, a.out)
    else:
        STEPS[a.step](a, Rows(a.out / FILES[a.step]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
