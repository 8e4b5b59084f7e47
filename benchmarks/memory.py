"""Peak RSS of `vsr run` against video length: memory must be bounded by the queues, not the video.

Runs the real command in fresh child processes on clips of N and N+extra frames and prints the
peak resident set size of each, and the growth per 1,000 extra frames as a share of the baseline.

    python benchmarks/memory.py [--frames 200] [--extra 1000] [--size 176x144] [--model bicubic]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from media import make_video  # noqa: E402


def peak_rss_mib(args: list[str]) -> float:
    """Run ``python -m vsr`` in a child and return its peak RSS (MiB), from wait4's rusage."""
    proc = subprocess.Popen([sys.executable, "-m", "vsr", *args], stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"vsr failed: {proc.stderr.read()}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--extra", type=int, default=1000)
    ap.add_argument("--size", default="176x144")
    ap.add_argument("--model", default="bicubic")
    a = ap.parse_args()
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
