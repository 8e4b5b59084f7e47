"""Damaged and spliced timestamps, in files made by the ffmpeg binary: the output has exactly the
decoded frames (none invented, none dropped), strictly increasing times, and audio in sync after a
splice; and the right video stream of a file with several."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import ffmpeg
from vsr.cli import main
from vsr.jobs.file import upscale_file
from vsr.jobs.session import open_session

RATE = 25
FAST = ["--model", "bicubic", "--preset", "ultrafast", "--progress", "none"]


def clip(path: Path, seconds: float, *extra: str, tone: int = 440) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={RATE}:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency={tone}:duration={seconds}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2", "-g", "12", "-c:a", "aac", *extra, str(path))
    return path


def video_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(c.streams.video[0])]


def audio_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [p.pts * p.time_base for p in c.demux(s) if p.size and p.pts is not None]


@pytest.fixture(scope="module")
def spliced(tmp_path_factory) -> tuple[Path, Path]:
    """Two MPEG-TS captures concatenated byte for byte (a broadcast splice): at the join every
    stream's clock resets to its start, video and audio alike."""
    d = tmp_path_factory.mktemp("splice")
    a, b = clip(d / "a.ts", 2), clip(d / "b.ts", 2, tone=880)
    (d / "spliced.ts").write_bytes(a.read_bytes() + b.read_bytes())
    return d / "spliced.ts", b


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_a_splice_keeps_every_second_and_audio_in_sync(spliced, tmp_path: Path, ext: str, capsys) -> None:
    src, second = spliced
    out = tmp_path / f"out{ext}"
    assert main(["run", str(src), "-o", str(out), *FAST]) == 0  # MP4 used to fail in the muxer (errno 22)
    assert "timestamps went back 2 time(s)" in capsys.readouterr().err  # video and audio, once each
    times = video_times(out)
    assert len(times) == 4 * RATE, "exactly the decoded frames"
    assert all(b > a for a, b in zip(times, times[1:])), "strictly increasing"
    step = Fraction(1, RATE)
    assert abs((times[-1] - times[0]) - (4 * RATE - 1) * step) <= step, "2 s after the splice stay 2 s"
    # After the splice, audio starts where it started relative to the video in the second capture.
    own = audio_times(second)[0] - video_times(second)[0]
    audio = audio_times(out)
    first_after = next(t for t in audio if t >= times[2 * RATE] - step)
    assert abs((first_after - times[2 * RATE]) - own) <= step, "audio within a frame of the video after the splice"


def remux_with_pts(src: Path, dst: Path, change: dict[int, int]) -> None:
    """``src``'s video packets into Matroska with the pts of packet k (decode order) replaced by the
    pts of packet change[k]: duplicated or gone back, as damaged captures have them."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        s = c.streams.video[0]
        o = out.add_stream_from_template(s)
        packets = [p for p in c.demux(s) if p.size]
        pts = [p.pts for p in packets]
        lag = 4 * (pts[1] - pts[0])  # decode times a few frames early, so damaged pts stay at or above them
        for k, p in enumerate(packets):
            p.pts = pts[change[k]] if k in change else p.pts
            p.dts = pts[k] - lag
            p.stream = o
            out.mux(p)


def test_duplicate_and_backward_pts_write_exactly_the_decoded_frames(tmp_path: Path, capsys) -> None:
    src = clip(tmp_path / "ok.mkv", 2, "-bf", "0")  # no B-frames: decode order is presentation order
    bad = tmp_path / "bad.mkv"
    remux_with_pts(src, bad, {10: 9, 20: 17, 21: 18})  # a duplicate, then two frames going back
    decoded = video_times(bad)
    assert len(decoded) == 2 * RATE
    out = tmp_path / "out.mkv"
    session = open_session(model="bicubic", preset="ultrafast", progress="none")
    summary = upscale_file(session, bad, out)
    times = video_times(out)
    assert len(times) == len(decoded) == summary.frames, "no frame invented or dropped"
    assert all(b > a for a, b in zip(times, times[1:]))
    assert summary.repaired_pts == 3 and summary.splices == 0
    # The frames around the damage keep their own times: only the three repaired ones moved.
    moved = [k for k, (a, b) in enumerate(zip(decoded, times)) if a != b]
    assert len(moved) == 3


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> Path:
    """MKV whose first track is a one-frame picture and whose second, marked default, is the video."""
    d = tmp_path_factory.mktemp("twovideo")
    path = d / "two.mkv"
    ffmpeg("-f", "lavfi", "-i", f"color=red:size=32x32:rate={RATE}:duration=0.04", "-f", "lavfi", "-i",
           f"testsrc2=size=64x48:rate={RATE}:duration=3.6", "-map", "0:v", "-map", "1:v",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-disposition:v:0", "0", "-disposition:v:1", "default", str(path))
    for index, (width, count) in enumerate([(32, 1), (64, 90)]):
        with av.open(str(path)) as c:
            s = c.streams.video[index]
            assert (s.codec_context.width, sum(1 for _ in c.decode(s))) == (width, count)
    return path


@pytest.mark.parametrize("how", [[], ["--segment-seconds", "1"], ["--encoder", "ffmpeg"]])
def test_the_default_video_stream_is_upscaled(two_videos: Path, tmp_path: Path, how: list, capsys) -> None:
    out = tmp_path / "out.mkv"
    assert main(["run", str(two_videos), "-o", str(out), *FAST, *how]) == 0
    err = capsys.readouterr().err
    assert "video stream #1" in err and "#0 h264 32x32" in err and "not carried over" in err
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and c.streams.video[0].width == 256
        assert sum(1 for _ in c.decode(video=0)) == 90


def test_video_stream_picks_another(two_videos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "still.mkv"
    assert main(["run", str(two_videos), "-o", str(out), *FAST, "--video-stream", "0"]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].width == 128 and sum(1 for _ in c.decode(video=0)) == 1
    assert main(["run", str(two_videos), "-o", str(tmp_path / "x.mkv"), *FAST, "--video-stream", "5"]) == 2
    assert "--video-stream 5 is not a video stream" in capsys.readouterr().err


def test_cover_art_is_copied_not_upscaled(tmp_path: Path) -> None:
    art = tmp_path / "art.png"
    ffmpeg("-f", "lavfi", "-i", "color=blue:size=40x30", "-frames:v", "1", str(art))
    src = tmp_path / "song video.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={RATE}:duration=1", "-i", str(art),
           "-map", "0:v", "-map", "1:v", "-c:v:0", "libx264", "-pix_fmt:v:0", "yuv420p", "-c:v:1", "png",
           "-disposition:v:1", "attached_pic", str(src))
    out = tmp_path / "out.mp4"
    assert main(["run", str(src), "-o", str(out), *FAST]) == 0
    with av.open(str(out)) as c:
        videos = list(c.streams.video)
        assert [v.width for v in videos] == [256, 40], "the video upscaled, the cover art as it was"
        assert videos[1].disposition & av.stream.Disposition.attached_pic
