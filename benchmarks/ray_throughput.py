"""Frames/s of `vsr run` with the local executor against the Ray executor with 1 and 2 CPU actors.

Each row runs the real pipeline (decode → upscale → ffv1 encode) on the same synthetic clip, after a
warm-up file on the same session, so the numbers are steady-state throughput: Ray and actor start-up
is reported in its own column. The Ray rows share one private local Ray (started as `vsr run` starts
it: no dashboard, loopback only); each actor uses the cluster's CPUs divided by the actors as torch
threads, the local rows 1 and 2 threads. Also printed: driver CPU time per frame (whole process, and the
dispatch thread alone) and bytes per frame into and out of the object store.

    python benchmarks/ray_throughput.py [--frames 120] [--size 160x96] [--models bicubic[,compact]]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import torch  # noqa: E402
from media import make_video  # noqa: E402

from vsr.config import RunConfig  # noqa: E402
from vsr.jobs.session import open_session
from vsr.jobs.file import upscale_file  # noqa: E402
import ray  # noqa: E402

from vsr.executors import ray_pool  # noqa: E402

WARMUP_FRAMES = 8  # frames of the warm-up file each session runs first (model load, first-call costs)
ROWS = (("local", None, 1), ("local", None, 2), ("ray", 1, None), ("ray", 2, None))  # executor, actors, threads


def run_row(model: str, executor: str, workers: int | None, threads: int | None, clip: Path, warm: Path,
            tmp: Path) -> dict:
    """One session: open (model load, actors), a warm-up file, then the timed file."""
    if threads:
        torch.set_num_threads(threads)  # local: the model runs in this process
    else:  # Ray actors get the cluster's CPUs divided among them, as vsr gives them
        threads = max(1, int(ray.cluster_resources().get("CPU", 1) // workers))
    config = RunConfig(model=model, executor=executor, workers=workers, codec="ffv1", pix_fmt="yuv444p",
                       progress="none", overwrite=True, quiet=True)
    t0 = time.perf_counter()
    session = open_session(config)
    try:
        upscale_file(session, warm, tmp / "warm_out.mkv")
        startup = time.perf_counter() - t0
        t1, cpu1 = time.perf_counter(), time.process_time()
        summary = upscale_file(session, clip, tmp / f"{model}_{executor}_{workers}.mkv")
        seconds, cpu = time.perf_counter() - t1, time.process_time() - cpu1
    finally:
        session.close()
    s = summary.stats
    return {
        "model": model, "executor": executor, "actors": workers or "-", "threads": threads, "startup_s": startup,
        "fps": summary.frames / seconds,
        "cpu_ms": 1000 * cpu / summary.frames,  # this process: all the work when local
        "dispatch_ms": 1000 * s.get("dispatch_cpu_s_per_frame", float("nan")),
        "kib_in": s.get("bytes_in_per_frame", float("nan")) / 1024,  # object store, Ray rows only
        "kib_out": s.get("bytes_out_per_frame", float("nan")) / 1024,
        "per_actor": " ".join(f"{k}:{v}" for k, v in sorted(s.get("frames_per_actor", {}).items())) or "-",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--size", default="160x96", help="input WxH (output is x4)")
    ap.add_argument("--models", default="bicubic", help="comma-separated, e.g. bicubic,compact")
    a = ap.parse_args()
    logging.getLogger("vsr").setLevel(logging.ERROR)
    w, h = map(int, a.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        clip, warm = tmp / "clip.mkv", tmp / "warm.mkv"
        make_video(clip, n=a.frames, size=(w, h), codec="ffv1", pix_fmt="yuv444p", audio_start=None)
        make_video(warm, n=WARMUP_FRAMES, size=(w, h), codec="ffv1", pix_fmt="yuv444p", audio_start=None)
        ray_pool.connect(None)  # one private Ray for every Ray row; its start-up is not in the table
        try:
            for model in a.models.split(","):
                for executor, workers, threads in ROWS:
                    rows.append(run_row(model, executor, workers, threads, clip, warm, tmp))
        finally:
            ray.shutdown()
    print(f"{a.frames} frames {w}x{h} → ×4, ffv1 in and out")
    cols = [("model", "model", "s"), ("executor", "executor", "s"), ("actors", "actors", "s"),
            ("torch threads", "threads", "d"), ("start s", "startup_s", ".1f"), ("frames/s", "fps", ".1f"),
            ("driver CPU ms/frame", "cpu_ms", ".2f"), ("dispatch ms/frame", "dispatch_ms", ".2f"),
            ("KiB in/frame", "kib_in", ".1f"), ("KiB out/frame", "kib_out", ".1f"),
            ("frames per actor", "per_actor", "s")]
    print("| " + " | ".join(title for title, _, _ in cols) + " |")
    print("|" + "|".join("-" * (len(title) + 2) for title, _, _ in cols) + "|")
    for r in rows:
        cells = [format(r[key] if fmt != "s" else str(r[key]), fmt) for _, key, fmt in cols]
        print("| " + " | ".join(c.rjust(len(title)) for c, (title, _, _) in zip(cells, cols)) + " |")

if __name__ == "__main__":
    main()
