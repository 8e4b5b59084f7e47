"""Split runs (--segment-seconds): cut at keyframes, joined without re-encoding, resumable after a kill.

The clip has B-frames and open GOPs (x264 open-gop, keyint 10), AAC audio and SRT subtitles, so a
segment's first frames and the leading B-frames of the next GOP test the cut. Lossless x264
(crf 0) makes pixels comparable between a split and a streamed run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import OPEN_GOP, VFR_PTS, make_video, packets, video_frames, with_subtitles
from vsr.cli import main
from vsr.media.decode import read_rgb
from vsr.jobs.split.workdir import WORK_SUFFIX
from vsr.jobs.split.plan import plan_segments

RATE = 25  # frames/s
FRAMES = 60
LOSSLESS = ("--encoder-opt", "crf=0")  # x264 lossless
CHILD_TIMEOUT_S = 120


def run(*args: str) -> int:
    return main(["run", *map(str, args), "--model", "bicubic", "--progress", "none"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("seg")
    make_video(d / "base.mp4", n=FRAMES, size=(48, 32), rate=RATE, audio_start=0.0, options=OPEN_GOP)
    return with_subtitles(d / "base.mp4", d / "clip.mkv")


def seconds(path: Path) -> list[Fraction]:
    return [t for t, _ in video_frames(path)]


def same_pixels(a: Path, b: Path) -> bool:
    fa, fb = read_rgb(a), read_rgb(b)
    return len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb))


def test_plan_cuts_at_keyframes(clip: Path) -> None:
    segments, tb, first = plan_segments(clip, 0.7)
    with av.open(str(clip)) as c:
        keys = {p.pts for p in c.demux(c.streams.video[0]) if p.is_keyframe and p.pts is not None}
    assert first == 0 and len(segments) == 3
    assert all(s.start_pts in keys for s in segments)
    assert [s.frames for s in segments] == [20, 20, 20], "0.7 s at 25 fps: the next keyframe is at frame 20"
    assert all((b.start_pts - a.start_pts) * tb >= Fraction(7, 10) for a, b in zip(segments, segments[1:]))
    assert [s.end_pts for s in segments[:-1]] == [s.start_pts for s in segments[1:]] and segments[-1].end_pts is None
    assert len(plan_segments(clip, 60)[0]) == 1


def test_split_run_equals_streamed_run(clip: Path, tmp_path: Path) -> None:
    """Every frame once with the input's pts, pixels of the streamed lossless run, audio and
    subtitles copied once; nothing is left but the outputs."""
    plain, split = tmp_path / "plain.mkv", tmp_path / "split.mkv"
    assert run(clip, "-o", plain, *LOSSLESS) == 0
    assert run(clip, "-o", split, *LOSSLESS, "--segment-seconds", "0.7") == 0
    assert seconds(split) == seconds(clip) and len(seconds(split)) == FRAMES
    assert same_pixels(split, plain)
    assert packets(split, "audio") == packets(clip, "audio")
    assert packets(split, "subtitles") == packets(clip, "subtitles") and len(packets(clip, "subtitles")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.mkv", "split.mkv"], "work directory removed"


def test_b_frame_output_joins_with_increasing_dts(clip: Path, tmp_path: Path) -> None:
    """Default x264 (B-frames) into MP4: six segments joined; decode timestamps strictly increase."""
    out = tmp_path / "split.mp4"
    assert run(clip, "-o", out, "--segment-seconds", "0.3") == 0
    with av.open(str(out)) as c:
        pk = [(p.pts, p.dts) for p in c.demux(c.streams.video[0]) if p.size]
    dts = [d for _, d in pk]
    assert all(b > a for a, b in zip(dts, dts[1:])) and all(d <= p for p, d in pk)
    assert any(b[0] < a[0] for a, b in zip(pk, pk[1:])), "the output has B-frames (pts out of decode order)"
    assert seconds(out) == seconds(clip) and len(read_rgb(out)) == FRAMES
    assert packets(out, "audio") == packets(clip, "audio")


def test_variable_frame_rate_late_start(tmp_path: Path) -> None:
    """Irregular timestamps starting at 0.5 s, a keyframe every 3 frames: every segment keeps them."""
    src = tmp_path / "vfr.mp4"
    make_video(src, pts=VFR_PTS, size=(48, 32), audio_start=0.3, options={"g": "3", "keyint_min": "3"})
    assert [s.frames for s in plan_segments(src, 0.1)[0]] == [6, 3, 3]  # keyframes at 0.5 0.59 0.733 0.9 s
    out = tmp_path / "out.mp4"
    assert run(src, "-o", out, "--segment-seconds", "0.1") == 0
    assert seconds(out) == [Fraction(p, 1000) for p in VFR_PTS]
    assert packets(out, "audio") == packets(src, "audio")


def test_progress_reports_segments(clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.mkv"
    assert main(["run", str(clip), "-o", str(out), "--model", "bicubic", "--progress", "json",
                 "--segment-seconds", "0.7"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert lines[-1]["segments"] == lines[-1]["segments_total"] == 3 and lines[-1]["frames"] == FRAMES
    assert lines[-1]["total"] == FRAMES and lines[-1]["eta_s"] == 0.0


def test_split_run_refuses_sections_and_patterns(clip: Path, tmp_path: Path, capsys) -> None:
    assert run(clip, "-o", tmp_path / "a.mkv", "--segment-seconds", "1", "--start", "0.5") == 2
    assert "cannot be combined with start/duration" in capsys.readouterr().err
    assert run(clip, "-o", tmp_path / "f_%04d.png", "--segment-seconds", "1") == 2
    assert "frame pattern" in capsys.readouterr().err
    assert run(clip, "-o", tmp_path / "b.mkv", "--segment-seconds", "0") == 2
    assert not any(tmp_path.iterdir())


# -------------------------------------------------------------------------- resume after SIGKILL

LONG_FRAMES = 200  # 20 GOPs of 0.4 s: 20 segments


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("seglong")
    make_video(d / "base.mp4", n=LONG_FRAMES, size=(128, 96), rate=RATE, audio_start=0.0, options=OPEN_GOP)
    return with_subtitles(d / "base.mp4", d / "long.mkv")


def child(src: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vsr", "run", str(src), "-o", str(out), "--model", "bicubic",
                             "--progress", "none", *LOSSLESS, "--segment-seconds", "0.3", *extra],
                            stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill_redoes_only_unfinished(long_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    work = tmp_path / f".out.mkv{WORK_SUFFIX}"
    proc, t0 = child(long_clip, out), time.monotonic()
    while len(list(work.glob("seg_*.json"))) < 3:
        assert proc.poll() is None and time.monotonic() - t0 < CHILD_TIMEOUT_S, "the run never finished a segment"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # no handler runs: whatever is on disk is what a crash leaves
    proc.communicate(timeout=CHILD_TIMEOUT_S)
    records = sorted(work.glob("seg_*.json"))
    done = len(records)
    assert not out.exists() and 3 <= done < 20, f"killed mid-run ({done} of 20 segments)"
    kept = {r.with_suffix(".mkv").name: os.stat(r.with_suffix(".mkv")).st_ino for r in records}

    # Without --resume an unfinished run is never silently thrown away; changed settings are refused.
    again = child(long_clip, out)
    assert again.wait(CHILD_TIMEOUT_S) == 2 and "--resume" in again.stderr.read()
    changed = child(long_clip, out, "--resume", "--scale", "2")
    assert changed.wait(CHILD_TIMEOUT_S) == 2 and "settings" in changed.stderr.read()

    # A finished segment that fails its checksum is redone; the others are reused as they are.
    damaged = records[1].with_suffix(".mkv")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    seen: dict[str, int] = {}
    resumed = child(long_clip, out, "--resume")
    while resumed.poll() is None:  # watch the work directory: reused files keep their inode
        for name in kept:
            try:
                seen[name] = os.stat(work / name).st_ino
            except FileNotFoundError:
                pass
        time.sleep(0.005)
    err = resumed.stderr.read()
    assert resumed.returncode == 0, err
    assert f"{done - 1} already done" in err and "fails its checksum" in err and f"{done - 1} reused" in err
    assert all(seen.get(n, ino) == ino for n, ino in kept.items() if n != damaged.name), "reused, not redone"
    assert not work.exists()

    reference = tmp_path / "ref.mkv"
    assert run(long_clip, "-o", reference, *LOSSLESS) == 0
    assert same_pixels(out, reference) and seconds(out) == seconds(long_clip)
    assert packets(out, "audio") == packets(long_clip, "audio")


def test_hangup_keeps_finished_segments(long_clip: Path, tmp_path: Path) -> None:
    """SIGHUP (the terminal or ssh session closed) ends a split run like SIGTERM: exit 129, nothing at
    the output path, finished segments kept for --resume, which the message says."""
    out = tmp_path / "out.mkv"
    work = tmp_path / f".out.mkv{WORK_SUFFIX}"
    proc, t0 = child(long_clip, out), time.monotonic()
    while not list(work.glob("seg_*.json")):
        assert proc.poll() is None and time.monotonic() - t0 < CHILD_TIMEOUT_S, "the run never finished a segment"
        time.sleep(0.01)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 129, err
    assert "interrupted by SIGHUP" in err and "--resume" in err and "kept" in err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    assert list(work.glob("seg_*.json")), "finished segments are kept"
