"""``vsr bench``: speed of a model on a device, against the official-style baseline, in one run.

Two settings are measured in the same process on the same clip:

- chosen: ``--precision``, ``--batch``, ``--tile`` (and ``--compile``) as given; tiles of several
  frames share a batch (the engine's normal path, CUDA graphs on CUDA);
- official: how the authors' test.py runs the model: fp32, batch 1, eager (no CUDA graph, no
  compile), one frame per call (no tiling across frames); same tile and colour fix.

For each: ``ms_per_tile`` (model time per 128×128 LR tile-equivalent, from the engine's own model
timer over the clip), ``tflops`` (FLOPs of one tile counted with torch.utils.flop_counter, times the
tiles, over the model time), ``peak_fraction`` (tflops over a matmul ceiling timed in this run on this
device in this precision, before and after the settings' runs, the best kept), ``model_fps`` (the
Upscaler alone on the decoded frames, in memory, best of ``--repeats`` passes), ``pipeline_fps``
(the whole ``vsr run`` path: decode → upscale → encode, threaded), ``pipeline_efficiency``
(pipeline_fps / model_fps), ``speedup_vs_official`` (official ms_per_tile / ms_per_tile),
``peak_device_mem_mb`` (CUDA: max allocated; CPU: the host figure, the device is the host) and
``peak_host_mem_mb`` (the process's peak RSS during that setting's runs, Linux).
``--json`` prints a list of two objects (chosen, then official) with exactly those keys plus
``model``, ``device``, ``precision``, ``tile``, ``batch``.

Without ``--input`` a clip is generated: 854×480, 24 frames on CUDA; on the CPU 176×144, 8 frames for
the classic and compact models and 128×96, 4 frames for the AdcSR models (a CPU tile of adcsr-tiny
takes about a second). Models whose weights are not found (no ``--weights``, nothing in the cache
or the package) run with random weights (speed only), said in one line.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vsr.bench.measure import (
    ENGINE_STAGES,
    device_peak_mb,
    host_peak_mb,
    instrumented,
    matmul_tflops,
    reset_peaks,
    sync,
    tile_flops,
)
from vsr.bench.media import clip_size, decode_split, encode_alone, make_clip
from vsr.config import RunConfig
from vsr.errors import UsageError, WeightsError
from vsr.jobs.file import upscale_file
from vsr.jobs.session import Session, with_scale
from vsr.models import attach, choose, describe, load_model, spec
from vsr.upscale import engine
from vsr.upscale.build import default_tile_batch
from vsr.upscale.device import (
    DTYPES,
    PRECISION_NAMES,
    default_cpu_threads,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger("vsr")

REF_TILE = 128  # LR px: costs are per 128×128 tile-equivalent
KEYS = ("model", "device", "precision", "tile", "batch", "ms_per_tile", "filler_tiles", "tflops", "peak_fraction", "model_fps",
        "pipeline_fps", "pipeline_efficiency", "speedup_vs_official", "peak_device_mem_mb", "peak_host_mem_mb")


@dataclass
class Result:
    row: dict
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds per frame
    note: str = ""


def measure(name: str, model: torch.nn.Module, device: torch.device, precision: str, tile: int, batch: int,
            compile: bool, official: bool, clip: Path, frames: list[np.ndarray], ceiling: float,
            repeats: int = 1) -> Result:
    reset_peaks(device)
    up = engine.Upscaler(model, device=device, precision=precision, tile=tile, batch=batch, color_fix="auto",
                         compile=compile and not official, cuda_graphs=not official)
    h, w = frames[0].shape[:2]
    out_size = (w * up.scale, h * up.scale)
    group = 1 if official else up.frames_per_call(w, h)
    calls = [frames[i : i + group] for i in range(0, len(frames), group)]
    up.upscale(calls[0], out_size)  # warm-up: plans, cuDNN autotune, CUDA graphs, compile
    sync(device)
    model_s = seconds_model = float("inf")
    for _ in range(max(1, repeats)):  # best of ``repeats`` passes: a shared machine only ever slows a pass
        base = (up.stats.seconds_model, up.stats.tiles, up.stats.filler_tiles)
        t0 = time.perf_counter()
        outputs = [o for c in calls for o in up.upscale(c, out_size)]
        sync(device)
        model_s = min(model_s, time.perf_counter() - t0)
        seconds_model, tiles = min(seconds_model, up.stats.seconds_model - base[0]), up.stats.tiles - base[1]
        fillers = up.stats.filler_tiles - base[2]  # computed to keep shapes static: time charged, not counted
    plan = up.plan(h, w)
    equivalents = tiles * plan.tile_h * plan.tile_w / REF_TILE**2
    ms_per_tile = seconds_model * 1000 / equivalents
    flops = tile_flops(up.model, plan.tile_h, plan.tile_w, device, up.dtype) * tiles
    tflops = flops / seconds_model / 1e12
    # The whole `vsr run` path on the same Upscaler (warm), with the run's default encode settings.
    config = RunConfig(model=name, device=str(device), precision=precision, tile=tile, batch=batch,
                       overwrite=True, progress="none", quiet=True)
    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        session = Session(with_scale(config.validate(), up.descriptor), name, up)
        if official:  # one frame per call: make the pipeline group frames the same way
            up.frames_per_call = lambda width, height: 1  # type: ignore[method-assign]
        summary = upscale_file(session, clip, Path(tmp) / ("out" + clip.suffix))
        enc_wall, enc_cpu = encode_alone(outputs, Path(tmp) / "encode.mp4") if not official else (0.0, 0.0)
    del outputs
    sync(device)
    host_mb = host_peak_mb()
    n = len(frames)
    st = summary.stats
    stages = {"decode (thread)": st.get("seconds_decode", 0.0) / summary.frames,
              "upscale (thread)": st.get("seconds_upscale", 0.0) / summary.frames,
              "encode (thread, incl. RGB→YUV)": st.get("seconds_encode", 0.0) / summary.frames}
    if not official:  # the instrumented pass: one more run over the clip, steps synced and timed
        inner: dict[str, float] = {}
        with instrumented(up, inner):
            t0 = time.perf_counter()
            for c in calls:
                up.upscale(c, out_size)
            total = time.perf_counter() - t0
        inner = {k: v / n for k, v in inner.items()}
        inner["engine other (tile lists, cat, checks)"] = max(0.0, total / n - sum(inner.values()))
        stages = {**stages, "encode alone, wall (incl. RGB→YUV, flush)": enc_wall / n,
                  "encode alone, process CPU (all x264 threads)": enc_cpu / n, **inner}
    pipeline_fps = summary.fps
    model_fps = n / model_s
    row = {
        "model": name, "device": str(device), "precision": PRECISION_NAMES[up.dtype], "tile": tile,
        "batch": up.batch, "ms_per_tile": ms_per_tile, "filler_tiles": fillers, "tflops": tflops,
        "peak_fraction": tflops / ceiling if ceiling > 0 else 0.0, "model_fps": model_fps,
        "pipeline_fps": pipeline_fps, "pipeline_efficiency": pipeline_fps / model_fps,
        "speedup_vs_official": None, "peak_device_mem_mb": device_peak_mb(device, host_mb),
        "peak_host_mem_mb": host_mb,
    }
    return Result(row, stages, f"{tiles} tiles of {plan.tile_w}x{plan.tile_h} (+{fillers} filler tiles computed to keep "
                               f"batches full, their time charged to the real ones), {summary.frames} frames")


def load(name: str, weights: str | None, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, str]:
    """The model with its weights, or (models that need weights, none found) random ones."""
    try:
        return load_model(name, weights, device=device, dtype=dtype), ""
    except WeightsError:
        if weights is not None or spec(name).describe is not None:  # a file's model has no random stand-in
            raise
    torch.manual_seed(0)
    return attach(spec(name).build().to(device, dtype), spec(name).descriptor), "random weights (speed only)"


def run_bench(args: argparse.Namespace) -> tuple[list[Result], dict]:
    device = resolve_device(args.device)
    name, _ = choose(args.model, device, args.weights)  # auto: what the weights file holds; unknown names fail
    args.model = name
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or default_cpu_threads())  # as `vsr run` does
    dtype = resolve_precision(args.precision, device)
    tile, batch = default_tile_batch(describe(args.model, args.weights), device)  # the same defaults as `vsr run`
    tile = tile if args.tile is None else args.tile
    batch = batch if args.batch is None else args.batch
    with tempfile.TemporaryDirectory(prefix="vsr-bench-clip-") as tmp:
        clip = args.input
        (w, h), n = clip_size(args.model, device)
        if args.size:
            w, h = map(int, args.size.lower().split("x"))
        n = args.frames or n
        if clip is None:
            clip = Path(tmp) / "clip.mp4"
            make_clip(clip, (w, h), n)
        elif not clip.is_file():
            raise UsageError(f"{clip}: no such file")
        frames, t_decode, t_convert = decode_split(clip)
        ceiling = {p: matmul_tflops(device, p) for p in {dtype, torch.float32}}
        model, why = load(args.model, args.weights, device, dtype)
        results = [measure(args.model, model, device, args.precision, tile, batch, args.compile, False, clip, frames,
                           ceiling[dtype], args.repeats)]
        del model  # the official setting's peak memory should not hold the chosen model's weights
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.official:
            model32, _ = load(args.model, args.weights, device, torch.float32)
            results.append(measure(args.model, model32, device, "fp32", tile, 1, False, True, clip, frames,
                                   ceiling[torch.float32], args.repeats))
            official = results[1].row["ms_per_tile"]
            results[0].row["speedup_vs_official"] = official / results[0].row["ms_per_tile"]
            results[1].row["speedup_vs_official"] = 1.0
        for p in ceiling:  # timed again after the runs, the best kept: a shared machine only ever lowers it
            ceiling[p] = max(ceiling[p], matmul_tflops(device, p))
        for r in results:
            c = ceiling[DTYPES[r.row["precision"]]]
            r.row["peak_fraction"] = r.row["tflops"] / c if c > 0 else 0.0
    nf = len(frames)
    results[0].stages = {"decode alone": t_decode / nf, "colour conversion alone (YUV→RGB)": t_convert / nf,
                         **results[0].stages}
    info = {"clip": f"{frames[0].shape[1]}x{frames[0].shape[0]}, {nf} frames" + (f" ({args.input})" if args.input else
            " (generated)"), "ceiling_tflops": {PRECISION_NAMES[k]: v for k, v in ceiling.items()},
            "weights": why, "threads": torch.get_num_threads()}
    return results, info


def format_table(results: list[Result], info: dict) -> str:
    lines = [f"clip {info['clip']}; torch threads {info['threads']}; matmul ceiling "
             + ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in info["ceiling_tflops"].items())
             + (f"; {info['weights']}" if info["weights"] else "")]
    head = ("setting   model        device  prec  tile batch  ms/tile  TFLOP/s  peak%  model fps  pipe fps  effic."
            "  speedup  dev MB  host MB")
    lines.append(head)
    for res, label in zip(results, ("chosen", "official")):
        r = res.row
        speed = "-" if r["speedup_vs_official"] is None else f"{r['speedup_vs_official']:.2f}x"
        lines.append(f"{label:<9} {r['model']:<12} {r['device']:<7} {r['precision']:<5} {r['tile']:>4} {r['batch']:>5}"
                     f" {r['ms_per_tile']:>8.2f} {r['tflops']:>8.4f} {100 * r['peak_fraction']:>5.1f}"
                     f" {r['model_fps']:>10.2f} {r['pipeline_fps']:>9.2f} {r['pipeline_efficiency']:>7.2f}"
                     f" {speed:>8} {r['peak_device_mem_mb']:>7.0f} {r['peak_host_mem_mb']:>8.0f}")
    lines += [f"{label}: {res.note}" for res, label in zip(results, ("chosen", "official")) if res.note]
    lines.append("speedup = the official-style baseline (fp32, batch 1, eager, one frame per call, as the authors' "
                 "test.py runs it) over the chosen setting, in ms per 128² tile: on a GPU fp16, batches, CUDA graphs "
                 "and compile make it large; on a CPU fp32 is the only fast precision and a batch only adds work per "
                 "tile, so it stays near 1, and below 1 when the chosen setting batches tiles the CPU then waits on")
    stages = results[0].stages
    lines.append("")
    lines.append("per-stage, chosen setting, ms per frame (threads overlap: the pipeline runs at the pace of "
                 "its slowest thread)")
    for k, v in stages.items():
        lines.append(f"  {k:<40} {1000 * v:>10.2f}")
    engine_steps = {k: stages[k] for k, _ in ENGINE_STAGES if k in stages}
    whole = {"decode": stages.get("decode alone", 0.0) + stages.get("colour conversion alone (YUV→RGB)", 0.0),
             "upscale": stages.get("upscale (thread)", 0.0),
             "encode": max(stages.get("encode (thread, incl. RGB→YUV)", 0.0),
                           stages.get("encode alone, wall (incl. RGB→YUV, flush)", 0.0))}
    slow = max(whole, key=whole.get)
    where = f"; inside it: {max(engine_steps, key=engine_steps.get)}" if slow == "upscale" and engine_steps else ""
    lines.append(f"bottleneck: {slow} ({1000 * whole[slow]:.1f} ms/frame; decode {1000 * whole['decode']:.1f}, "
                 f"upscale {1000 * whole['upscale']:.1f}, encode {1000 * whole['encode']:.1f}){where}")
    lines.append("'alone': separate passes over the clip (decode, conversion; encode of the upscaled frames); "
                 "'(thread)': the pipeline run's own timers; engine steps: an extra Upscaler run with a device sync "
                 "around each step; 'engine other' is the remainder")
    return "\n".join(lines)
