"""Split runs and sections on what the ffmpeg binary writes, in every container a farm meets: MPEG-TS,
M2TS, Matroska, MP4 (plain and fragmented), MOV, AVI and WebM, with B-frames and open GOPs where the
codec has them. A split run (segment_seconds) and a section (start/duration) must give exactly the
frames (pixels) and pts of the streamed run; AVI with H.264 B-frames, whose packets carry no
presentation times, is refused for split runs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import ffmpeg
from vsr.cli import main

SECONDS = 4  # clip length
RATE = 25
GOP = 12  # frames per GOP (every ~0.5 s): several segments of 1 s, and sections inside GOPs
X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2", "-g", str(GOP),
        "-x264-params", f"open-gop=1:keyint={GOP}:min-keyint={GOP}:scenecut=0"]
CLIPS = {  # name: (file, ffmpeg output arguments)
    "mpegts": ("clip.ts", [*X264, "-c:a", "aac"]),
    "m2ts": ("clip.m2ts", [*X264, "-c:a", "aac", "-f", "mpegts", "-mpegts_m2ts_mode", "1"]),
    "mkv": ("clip.mkv", [*X264, "-c:a", "aac"]),
    "mp4": ("clip.mp4", [*X264, "-c:a", "aac"]),
    "fmp4": ("clip.mp4", [*X264, "-c:a", "aac", "-movflags", "frag_keyframe+empty_moov+default_base_moof"]),
    "mov": ("clip.mov", [*X264, "-c:a", "aac"]),
    "avi": ("clip.avi", ["-c:v", "mpeg4", "-bf", "2", "-g", str(GOP), "-q:v", "4", "-c:a", "mp3"]),
    "webm": ("clip.webm", ["-c:v", "libvpx-vp9", "-g", str(GOP), "-deadline", "realtime", "-cpu-used", "8",
                           "-b:v", "200k", "-c:a", "libopus"]),
}
LOSSLESS = ["--model", "bicubic", "--codec", "ffv1", "--progress", "none"]


def make(folder: Path, name: str) -> Path:
    file, args = CLIPS[name]
    path = folder / file
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={RATE}:duration={SECONDS}",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}", *args, str(path))
    return path


def frames(path: Path) -> list[tuple[Fraction, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts * f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_split_runs_and_sections_keep_every_frame(name: str, tmp_path: Path) -> None:
    src = make(tmp_path, name)
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        origin = (stream.start_time or 0) * stream.time_base  # where start counts from
        times = [f.pts * f.time_base - origin for f in c.decode(stream)]
    assert len(times) == SECONDS * RATE, "the fixture holds every frame"
    streamed, split = tmp_path / "streamed.mkv", tmp_path / "split.mkv"
    assert main(["run", str(src), "-o", str(streamed), *LOSSLESS]) == 0
    assert main(["run", str(src), "-o", str(split), "--segment-seconds", "1", *LOSSLESS]) == 0
    reference = frames(streamed)
    assert len(reference) == SECONDS * RATE
    assert same(frames(split), reference), f"{name}: the split run differs from the streamed run"
    # A section that starts inside a GOP, past a keyframe: decoded from the keyframe before it.
    start, duration = 1.3, 1.0
    section = tmp_path / "section.mkv"
    assert main(["run", str(src), "-o", str(section), "--start", str(start), "--duration", str(duration),
                 *LOSSLESS]) == 0
    got = frames(section)
    want = [ref for t, ref in zip(times, reference) if start <= t < start + duration]
    assert len(want) == round(duration * RATE)
    assert [img.tobytes() for _, img in got] == [img.tobytes() for _, img in want], f"{name}: section pixels"
    assert [t - got[0][0] for t, _ in got] == [t - want[0][0] for t, _ in want], f"{name}: section timing"


def test_avi_with_h264_b_frames_is_refused_for_split_runs(tmp_path: Path, capsys) -> None:
    src = tmp_path / "b.avi"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={RATE}:duration=2", *X264, str(src))
    assert main(["run", str(src), "-o", str(tmp_path / "x.mkv"), "--segment-seconds", "1", *LOSSLESS]) == 2
    err = capsys.readouterr().err
    assert "no presentation times" in err and "remux" in err and not (tmp_path / "x.mkv").exists()
    # The streamed run of the same file keeps every frame.
    assert main(["run", str(src), "-o", str(tmp_path / "s.mkv"), *LOSSLESS]) == 0
    assert len(frames(tmp_path / "s.mkv")) == 2 * RATE
