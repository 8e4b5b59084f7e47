"""Split runs (--segment-seconds) against streaming, with CPU Ray actors on this machine.

Rows, all on one long synthetic clip (H.264, a keyframe every second) with the same model and x264
settings, each after a warm-up file on the same session (model load and actor start-up excluded):

    stream   1 actor      the Ray frame executor (frames shipped through the object store)
    segments 1 actor      whole segments on one actor: the cost of cutting, seeking and joining
    segments 2 actors     the speed-up of a second worker on the same clip
    local stream / local segments (no Ray), for reference

Each actor gets the cluster's CPUs divided among the actors as torch threads (as vsr gives them);
decode and encode run inside the actors in segment mode and on the driver in stream mode. The local
rows take vsr's own CPU default (all cores when the machine is idle, else all but one).

    python benchmarks/segments.py [--seconds 12] [--size 176x144] [--segment-seconds 2] [--model compact]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from media import make_video  # noqa: E402

from vsr.config import RunConfig  # noqa: E402
from vsr.jobs.session import open_session
from vsr.jobs.file import upscale_file  # noqa: E402

RATE = 25  # frames/s of the clip
WARMUP_FRAMES = 2 * RATE  # frames of the warm-up file (two segments of 1 s)
ROWS = (  # label, executor, actors, segments?
    ("local stream", "local", None, False),
    ("local segments", "local", None, True),
    ("ray stream", "ray", 1, False),
    ("ray segments", "ray", 1, True),
    ("ray segments", "ray", 2, True),
)


def run_row(args: argparse.Namespace, executor: str, workers: int | None, split: bool, clip: Path, warm: Path,
            tmp: Path) -> dict:
    config = RunConfig(model=args.model, executor=executor, workers=workers, progress="none", overwrite=True,
                       quiet=True, segment_seconds=args.segment_seconds if split else None)
    session = open_session(config)
    try:
        upscale_file(session, warm, tmp / "warm_out.mp4")
        t0 = time.perf_counter()
        summary = upscale_file(session, clip, tmp / f"{executor}_{workers}_{split}.mp4")
        seconds = time.perf_counter() - t0
    finally:
        session.close()
    return {"frames": summary.frames, "seconds": seconds, "segments": summary.stats.get("segments", "-")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=12.0, help="length of the clip")
    p.add_argument("--size", default="176x144", help="LR frame size WxH")
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--model", default="compact")
    args = p.parse_args()
    logging.getLogger("vsr").setLevel(logging.ERROR)
    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clip, warm = tmp / "clip.mp4", tmp / "warm.mp4"
        gop = {"g": str(RATE), "keyint_min": str(RATE)}
        make_video(clip, n=round(args.seconds * RATE), size=(w, h), rate=RATE, options=gop)
        make_video(warm, n=WARMUP_FRAMES, size=(w, h), rate=RATE, options=gop)
        rows = []
        for label, executor, workers, split in ROWS:
            r = run_row(args, executor, workers, split, clip, warm, tmp)
            rows.append((label, workers or "-", r))
            print(f"  {label} {workers or ''}: {r['frames'] / r['seconds']:.2f} fps", file=sys.stderr)
    base = {(label, workers): r["seconds"] for label, workers, r in rows}
    print(f"\n{args.model}, {args.size} -> x4, {args.seconds:g} s clip at {RATE} fps, "
          f"{args.segment_seconds:g} s segments, x264 medium CRF 18\n")
    print(f"| {'run':<15} | actors | segments | {'wall s':>7} | {'fps':>6} | vs ray stream 1 | vs ray segments 1 |")
    print(f"|{'-' * 17}|--------|----------|{'-' * 9}|{'-' * 8}|-----------------|-------------------|")
    for label, workers, r in rows:
        fps = r["frames"] / r["seconds"]
        print(f"| {label:<15} | {workers!s:>6} | {r['segments']!s:>8} | {r['seconds']:>7.1f} | {fps:>6.2f} | "
              f"{base[('ray stream', 1)] / r['seconds']:>14.2f}x | {base[('ray segments', 1)] / r['seconds']:>16.2f}x |")


if __name__ == "__main__":
    main()
