"""`--encoder ffmpeg`: an ffmpeg binary (imageio-ffmpeg's here) encodes, vsr keeps its guarantees:
input pts (VFR, late start), every frame, audio packet for packet, tags, pixels as the PyAV writer's."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("ffmpeg", reason="--encoder ffmpeg needs ffmpeg-python")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from media import VFR_PTS, make_video, packets, stream_span, video_frames  # noqa: E402
from vsr.cli import main  # noqa: E402
from vsr.media.decode import read_rgb  # noqa: E402
from vsr.media.ffmpeg import binary as ffmpeg_binary, locate, writer as ffmpeg_writer  # noqa: E402
from vsr.media.codecs import EncodeSettings  # noqa: E402
from vsr.media.decode import VideoReader  # noqa: E402

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def run(*args: str) -> int:
    return main(["run", *args, "--progress", "none"])




def _tags(path: Path) -> tuple:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return (cc.name, cc.pix_fmt, cc.width, cc.height, int(cc.colorspace), int(cc.color_range),
                int(cc.color_primaries), int(cc.color_trc))


def test_vfr_clip_with_audio(vfr_clip: Path, tmp_path: Path) -> None:
    out, ref = tmp_path / "ffmpeg.mp4", tmp_path / "pyav.mp4"
    assert run(str(vfr_clip), "-o", str(out), "--model", "bicubic", "--encoder", "ffmpeg") == 0
    assert run(str(vfr_clip), "-o", str(ref), "--model", "bicubic") == 0
    src, dst = video_frames(vfr_clip), video_frames(out)
    assert len(dst) == len(src) == len(VFR_PTS)
    assert [t for t, _ in dst] == [t for t, _ in src]  # every pts, exactly
    assert stream_span(out) == stream_span(vfr_clip) == stream_span(ref)  # same start and duration
    assert packets(out) == packets(vfr_clip)  # audio copied packet for packet, same timestamps
    a_in, a_out = stream_span(vfr_clip, "audio")[0], stream_span(out, "audio")[0]
    assert a_out - stream_span(out)[0] == a_in - stream_span(vfr_clip)[0]
    assert _tags(out) == _tags(ref) == ("h264", "yuv420p", 256, 192, 6, 1, 6, 6)  # SD guess made explicit
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "MP4 output is faststart"
    with av.open(str(out)) as c:
        assert c.metadata.get("vsr_model") == "bicubic"
        assert [s.type for s in c.streams] == ["video", "audio"]
    assert not list(tmp_path.glob("*.partial"))


def test_section_matches_the_pyav_writer(vfr_clip: Path, tmp_path: Path) -> None:
    out, ref = tmp_path / "ffmpeg.mkv", tmp_path / "pyav.mkv"
    for path, encoder in ((out, "ffmpeg"), (ref, "pyav")):
        assert run(str(vfr_clip), "-o", str(path), "--model", "bicubic", "--scale", "1", "--start", "0.05",
                   "--duration", "0.3", "--encoder", encoder) == 0
    assert [t for t, _ in video_frames(out)] == [t for t, _ in video_frames(ref)]
    assert 3 <= len(video_frames(out)) < len(VFR_PTS)
    assert packets(out) == packets(ref)


@pytest.mark.parametrize(("pix_fmt", "tolerance"), [("yuv444p", 1), ("yuv422p10le", 4)])
def test_pixels_match_the_pyav_writer(tmp_path: Path, pix_fmt: str, tolerance: int) -> None:
    """Lossless FFV1 both ways: ffmpeg's scale filter converts as the PyAV writer's swscale does (8 and 10 bit)."""
    src = tmp_path / "in.mkv"
    make_video(src, n=4, size=(40, 24), codec="ffv1", pix_fmt=pix_fmt, audio_start=None)
    out, ref = tmp_path / "ffmpeg.mkv", tmp_path / "pyav.mkv"
    for path, encoder in ((out, "ffmpeg"), (ref, "pyav")):
        assert run(str(src), "-o", str(path), "--model", "bicubic", "--scale", "2", "--codec", "ffv1",
                   "--encoder", encoder) == 0
    assert _tags(out) == _tags(ref) and _tags(out)[:2] == ("ffv1", pix_fmt)
    a, b = read_rgb(out), read_rgb(ref)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert x.dtype == y.dtype == (np.uint16 if "10" in pix_fmt else np.uint8)
        diff = np.abs(x.astype(int) - y.astype(int))
        assert diff.max() <= tolerance and diff.mean() < tolerance / 4


def test_hevc_in_mov_keeps_aspect_rotation_timecode_and_tag(tmp_path: Path) -> None:
    base = tmp_path / "base.mp4"
    make_video(base, n=6, size=(72, 48), audio_start=0.0)
    src = tmp_path / "anamorphic.mov"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-display_rotation", "90", "-i", str(base), "-c", "copy",
                    "-bsf:v", "h264_metadata=sample_aspect_ratio=8/9", "-timecode", "01:02:03:04", str(src)],
                   check=True, timeout=60)
    out = tmp_path / "out.mov"
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--scale", "1", "--codec", "libx265",
               "--preset", "ultrafast", "--encoder", "ffmpeg") == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.codec_tag) == ("hevc", "hvc1")
        assert v.sample_aspect_ratio == Fraction(8, 9)
        assert next(c.decode(v)).rotation == 90
        assert v.metadata.get("timecode") == "01:02:03:04"
    assert video_frames(out) == video_frames(src)
    assert packets(out) == packets(src)


def test_encoder_failure_exits_1_with_ffmpeg_message(vfr_clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bad.mp4"
    assert run(str(vfr_clip), "-o", str(out), "--model", "bicubic", "--encoder", "ffmpeg", "--encoder-opt", "crf=banana") == 1
    err = capsys.readouterr().err
    assert "ffmpeg (libx264) exited with status" in err and "Error setting option crf to value banana" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert list(tmp_path.iterdir()) == []  # nothing at the output path, no .partial


def test_unknown_encoder_and_missing_binary(vfr_clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "x.mkv"
    assert run(str(vfr_clip), "-o", str(out), "--model", "bicubic", "--encoder", "ffmpeg", "--codec", "no_such_enc") == 2
    assert "has no video encoder 'no_such_enc'" in capsys.readouterr().err
    nv = tmp_path / "nv.mp4"  # a hardware encoder the binary lists but cannot open here: its software fallback
    assert run(str(vfr_clip), "-o", str(nv), "--model", "bicubic", "--encoder", "ffmpeg", "--codec", "h264_nvenc") == 0
    if not ffmpeg_binary._opens(FFMPEG, "h264_nvenc"):
        assert "falling back to libx264" in capsys.readouterr().err
    assert _tags(nv)[0] == "h264" and len(video_frames(nv)) == len(VFR_PTS)
    nv.unlink()

    def missing() -> str:
        raise RuntimeError("no ffmpeg exe could be found")

    monkeypatch.setattr(locate.shutil, "which", lambda name: None)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    assert run(str(vfr_clip), "-o", str(out), "--model", "bicubic", "--encoder", "ffmpeg") == 2
    assert "no ffmpeg binary on PATH" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _frames(path: Path):
    with VideoReader(path) as r:
        info = r.info
        return info, list(r)


def test_streaming_window_and_abort(tmp_path: Path) -> None:
    """Frames stream through: after 40 frames only the encoder's reorder window of timing is kept;
    abort() stops ffmpeg at once."""
    src = tmp_path / "in.mp4"
    make_video(src, n=40, size=(32, 32), audio_start=None)
    info, frames = _frames(src)
    settings = EncodeSettings(codec="libx264", preset="ultrafast", pix_fmt="yuv420p")
    w = ffmpeg_writer.FFmpegWriter(tmp_path / "a.mkv", "matroska", info, (32, 32), settings)
    for f in frames:
        w.write(f)
    w.close()
    assert (w.frames, w.packets) == (40, 40) and len(w._timing) <= 4 and w.proc.returncode == 0
    w = ffmpeg_writer.FFmpegWriter(tmp_path / "b.mkv", "matroska", info, (32, 32), settings)
    for f in frames[:5]:
        w.write(f)
    w.abort()
    assert w.proc.returncode is not None and not any(t.is_alive() for t in w._threads)


def test_hardware_upload_command(vfr_clip: Path) -> None:
    """VAAPI encoders get GPU frames: hwupload on a device ffmpeg opens; the binary's own encoder list
    and pixel formats are used (PyAV has no VAAPI encoders). Checked without the hardware."""
    assert ffmpeg_binary.codec_family("h264_vaapi") == "h264" and ffmpeg_binary.container_holds(".mp4", "h264_vaapi")
    assert ffmpeg_binary.default_pix_fmt("h264_vaapi", "yuv420p") == "nv12"
    assert ffmpeg_binary.default_pix_fmt("hevc_vaapi", "yuv420p10le") == "p010le"
    info, _ = _frames(vfr_clip)
    info = type(info)(**{**vars(info), "sample_aspect_ratio": Fraction(8, 9)})
    cmd = ffmpeg_binary.build_command("ffmpeg", info, (128, 96), EncodeSettings(codec="h264_vaapi", pix_fmt="nv12",
                                      options={"qp": "20"}), high_bit=False)
    line = " ".join(cmd)
    assert "-init_hw_device vaapi=vsr -filter_hw_device vsr" in line
    assert "format=nv12" in line and "setsar=8/9" in line and "hwupload" in line
    assert "-c:v h264_vaapi" in line and "-qp:v 20" in line and "-pix_fmt" not in line.split("-i pipe:0")[1]
    assert "-colorspace:v 6" in line and "-color_range:v 1" in line and "-f nut" in line
    assert "-pix_fmt rgb24 -s 128x96" in line
