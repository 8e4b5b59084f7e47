"""End to end `vsr run` on real PyAV-encoded files: timing, audio, sizes, images, sections."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import make_image, make_video, packets, stream_span, video_frames
from vsr.cli import main
from vsr.jobs.file import upscale_file
from vsr.jobs.session import open_session
from vsr.media.decode import read_rgb



def run(*args: str) -> int:
    return main(["run", *args, "--progress", "none"])


def test_vfr_timing_audio_and_defaults(vfr_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    assert run(str(vfr_clip), "-o", str(out), "--model", "bicubic") == 0
    src, dst = video_frames(vfr_clip), video_frames(out)
    assert [t for t, _ in dst] == [t for t, _ in src]  # every pts, exactly (rescaled time base)
    assert stream_span(out) == stream_span(vfr_clip)  # same start and duration
    # Audio copied packet for packet: identical payloads, count and timestamps (so the offset holds).
    assert packets(out) == packets(vfr_clip)
    a_in, a_out = stream_span(vfr_clip, "audio")[0], stream_span(out, "audio")[0]
    assert a_out - stream_span(out)[0] == a_in - stream_span(vfr_clip)[0]
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (v.codec_context.width, v.codec_context.height) == (256, 192)
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "MP4 output is faststart"
    assert not list(tmp_path.glob("*.partial"))


def test_constant_rate_default_output_name(tmp_path: Path) -> None:
    src = tmp_path / "cfr.mp4"
    make_video(src, n=30, size=(48, 32), rate=25, audio_start=None)
    assert run(str(src), "--model", "lanczos", "--scale", "2") == 0
    out = tmp_path / "cfr_x2.mp4"
    assert [t for t, _ in video_frames(out)] == [t for t, _ in video_frames(src)]
    assert read_rgb(out)[0].shape == (64, 96, 3)
    with av.open(str(out)) as c:
        assert not c.streams.audio


def test_no_audio_drops_audio(vfr_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "silent.mkv"
    assert run(str(vfr_clip), "-o", str(out), "--model", "bicubic", "--no-audio") == 0
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0 and len(c.streams.video) == 1


def test_output_pixels_follow_the_input(tmp_path: Path) -> None:
    """Lossless in and out, scale 1: the output must be the input (the pipeline adds no shift or swap)."""
    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_video(src, n=4, size=(40, 24), codec="ffv1", pix_fmt="yuv444p", audio_start=None)
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--scale", "4", "--codec", "ffv1", "--pix-fmt", "yuv444p") == 0
    a, b = read_rgb(src), read_rgb(out)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        small = y.reshape(24, 4, 40, 4, 3).astype(float).mean(axis=(1, 3))  # ×4 back to ×1 by area
        assert np.abs(small - x).mean() < 6.0  # bicubic + YUV round trip, same picture
    assert np.abs(b[1].astype(int) - b[0].astype(int)).mean() > 1  # frames differ, in order


@pytest.mark.parametrize(("scale", "expected"), [(4, (708, 572)), (3, (532, 430)), (1, (178, 144))])
def test_odd_input_size(tmp_path: Path, caplog, capsys, scale: int, expected: tuple[int, int]) -> None:
    src = tmp_path / "odd.mkv"
    make_video(src, n=3, size=(177, 143), pix_fmt="yuv444p", audio_start=None)
    out = tmp_path / f"odd_{scale}.mkv"
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--scale", str(scale), "--pix-fmt", "yuv420p") == 0
    assert read_rgb(out)[0].shape == (expected[1], expected[0], 3)
    if expected != (177 * scale, 143 * scale):
        assert "rounded to" in capsys.readouterr().err
    # Without --pix-fmt the source's 4:4:4 is kept, and 4:4:4 needs no rounding.
    keep = tmp_path / f"odd_{scale}_444.mkv"
    assert run(str(src), "-o", str(keep), "--model", "bicubic", "--scale", str(scale)) == 0
    assert read_rgb(keep)[0].shape == (143 * scale, 177 * scale, 3)


def test_height_keeps_aspect(tmp_path: Path) -> None:
    src = tmp_path / "a.mp4"
    make_video(src, n=3, size=(64, 48), audio_start=None)
    assert run(str(src), "--model", "bicubic", "--height", "96") == 0
    assert read_rgb(tmp_path / "a_96p.mp4")[0].shape == (96, 128, 3)


def test_section_start_duration(tmp_path: Path) -> None:
    src = tmp_path / "long.mp4"
    make_video(src, n=50, size=(32, 32), rate=25, audio_start=0.0, options={"g": "10"})
    out = tmp_path / "section.mp4"
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--start", "0.4", "--duration", "0.8") == 0
    times = [t for t, _ in video_frames(out)]
    assert len(times) == 20
    assert times == [Fraction(i, 25) for i in range(20)]  # shifted to start at zero, no gap
    got = read_rgb(out)
    full = read_rgb(src)
    # Frame 0 of the section is input frame 10 (0.4 s at 25 fps), not the keyframe before it.
    small = got[0].reshape(32, 4, 32, 4, 3).astype(float).mean(axis=(1, 3))
    errs = [np.abs(small - f).mean() for f in full]
    assert int(np.argmin(errs)) == 10
    audio = packets(out)
    assert audio and min(t for _, t in audio) >= 0 and max(t for _, t in audio) < Fraction(4, 5)


def test_image_in_out_and_16_bit(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    make_image(src, size=(37, 29))
    assert run(str(src), "--model", "lanczos") == 0
    out = read_rgb(tmp_path / "photo_x4.png")
    assert out[0].shape == (116, 148, 3) and out[0].dtype == np.uint8

    deep = tmp_path / "deep.png"
    pixels = make_image(deep, size=(20, 18), depth=16)
    assert read_rgb(deep)[0].dtype == np.uint16 and (read_rgb(deep)[0] == pixels).all()
    assert run(str(deep), "--model", "bicubic", "--scale", "1") == 0
    out16 = read_rgb(tmp_path / "deep_x1.png")[0]
    assert out16.dtype == np.uint16 and out16.shape == (18, 20, 3)
    assert (out16 % 257 != 0).mean() > 0.5, "16-bit precision is kept, not rounded through 8 bits"

    jpg = tmp_path / "shot.jpg"
    make_image(jpg, size=(24, 16))
    out_tif = tmp_path / "shot.tiff"
    assert run(str(jpg), "-o", str(out_tif), "--model", "bicubic") == 0
    assert read_rgb(out_tif)[0].shape == (64, 96, 3)


def test_batch_folder_with_a_bad_file(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "a.mp4", n=3, size=(32, 32), audio_start=None)
    make_image(folder / "b.png", size=(16, 16))
    (folder / "c.mp4").write_text("this is not a video")
    outdir = tmp_path / "out"
    outdir.mkdir()
    assert run(str(folder), "--output-dir", str(outdir), "--model", "bicubic") == 2
    err = capsys.readouterr().err
    assert "c.mp4" in err and "2 done, 0 skipped, 1 failed" in err
    assert sorted(p.name for p in outdir.iterdir()) == ["a_x4.mp4", "b_x4.png"]
    # Again with --skip-existing: the good ones are skipped, the bad one still fails.
    mtime = (outdir / "a_x4.mp4").stat().st_mtime_ns
    assert run(str(folder / "*.*"), "--output-dir", str(outdir), "--model", "bicubic", "--skip-existing") == 2
    assert "0 done, 2 skipped, 1 failed" in capsys.readouterr().err
    assert (outdir / "a_x4.mp4").stat().st_mtime_ns == mtime


def test_container_fallback_to_mkv(tmp_path: Path, capsys) -> None:
    src = tmp_path / "clip.webm"
    make_video(src, n=3, size=(32, 32), codec="libvpx-vp9", audio_start=None)
    assert run(str(src), "--model", "bicubic") == 0
    assert (tmp_path / "clip_x4.mkv").is_file()
    assert "writing .mkv" in capsys.readouterr().err


def test_progress_json_lines(tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.mp4"
    make_video(src, n=5, size=(32, 32), audio_start=None)
    assert main(["run", str(src), "--model", "bicubic", "--progress", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["frames"] == 5 and lines[-1]["total"] == 5 and "eta_s" in lines[-1]


def test_quiet_prints_nothing(tmp_path: Path, capsys) -> None:
    src = tmp_path / "q.mp4"
    make_video(src, n=3, size=(32, 32), audio_start=None)
    assert main(["run", str(src), "--model", "bicubic", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cpu_threads_follow_the_load() -> None:
    """All cores on an idle machine; one fewer when other work holds a core (torch threads spin)."""
    from vsr.upscale.device import busy_cores, default_cpu_threads

    busy = busy_cores(0.05)
    assert busy is not None and 0.0 <= busy <= os.cpu_count()  # this machine has /proc/stat

    cores = len(os.sched_getaffinity(0))
    assert default_cpu_threads(busy=0.0) == cores
    assert default_cpu_threads(busy=1.0) == max(1, cores - 1)


def test_cpu_estimate_is_close_and_cheap_and_warns_when_long(tmp_path: Path, monkeypatch, capsys) -> None:
    """A short measurement on the first frames predicts the run's time within 2x, costs under 5% of
    it, and a prediction over LONG_RUN_S prints the estimate and a faster choice."""
    from vsr.cli import main
    from vsr.jobs import progress

    src = tmp_path / "clip.mp4"
    make_video(src, n=90, size=(192, 128), audio_start=None)  # long enough (> 2 s) to measure in ESTIMATE_MIN_S
    session = open_session(model="compact", progress="none")
    summary = upscale_file(session, src, tmp_path / "out.mkv")
    predicted, real = summary.stats["estimated_seconds"], summary.seconds
    assert predicted is not None and real / 2 <= predicted <= real * 2, (predicted, real)
    assert summary.stats["estimate_spent_s"] < 0.05 * real
    monkeypatch.setattr(progress, "LONG_RUN_S", 0.0)  # every run is "long" now: the line must appear
    assert main(["run", str(src), "-o", str(tmp_path / "again.mkv"), "--model", "compact", "--progress", "none"]) == 0
    line = [x for x in capsys.readouterr().err.splitlines() if "fps on this CPU" in x]
    assert len(line) == 1 and "min at" in line[0] and "--scale 2 or a GPU is faster" in line[0], line
