"""Audio is copied whenever the output container can hold its codec and converted (one line saying
so) when it cannot, never a failure: a matrix of audio codecs × output containers, inputs made by the
ffmpeg binary, decided by codec id against what FFmpeg's muxer really accepts."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from media import ffmpeg
from vsr.jobs.file import upscale_file
from vsr.jobs.session import open_session

AUDIO = {  # codec: (encoder, container of the input)
    "mp3": ("libmp3lame", "mkv"), "aac": ("aac", "mkv"), "ac3": ("ac3", "mkv"), "opus": ("libopus", "mkv"),
    "flac": ("flac", "mkv"), "vorbis": ("libvorbis", "mkv"), "wmav2": ("wmav2", "avi"),
    "pcm_s16le": ("pcm_s16le", "mkv"),
}
OUTPUTS = {"mp4": "libx264", "mov": "libx264", "mkv": "libx264", "webm": "libvpx-vp9", "ts": "libx264",
           "flv": "libx264"}
# Where FFmpeg's muxer cannot carry the codec (what the round trip finds on FFmpeg 7); all else is copied.
CONVERTED = {("opus", "mov"), ("flac", "mov"), ("vorbis", "mov"), ("pcm_s16le", "mp4"), ("wmav2", "mp4"),
             ("wmav2", "mov"), ("wmav2", "mkv"), ("wmav2", "webm"), ("wmav2", "ts"), ("wmav2", "flv"),
             ("flac", "ts"), ("vorbis", "ts"), ("pcm_s16le", "ts"), ("vorbis", "flv"), ("pcm_s16le", "flv"),
             ("mp3", "webm"), ("aac", "webm"), ("ac3", "webm"), ("flac", "webm"), ("pcm_s16le", "webm")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio")
    out = {}
    for codec, (encoder, ext) in AUDIO.items():
        path = d / f"in_{codec}.{ext}"
        video = ["-c:v", "mpeg4"] if ext == "avi" else ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:rate=10:duration=1", "-f", "lavfi", "-i",
               "sine=frequency=440:duration=1:sample_rate=48000", "-ac", "2", *video, "-c:a", encoder, str(path))
        out[codec] = path
    return out


@pytest.fixture(scope="module")
def session():
    s = open_session(model="bicubic", scale=1, preset="ultrafast", progress="none", quiet=True)
    yield s
    s.close()


def raw(payload: bytes) -> bytes:
    """An AAC packet without the ADTS header MPEG-TS wraps it in (7 bytes, 9 with a CRC)."""
    if len(payload) > 7 and payload[0] == 0xFF and payload[1] & 0xF0 == 0xF0:
        return payload[7 if payload[1] & 1 else 9:]
    return payload


def audio_payloads(path: Path) -> tuple[str, list[bytes]]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return s.codec_context.codec.name, [raw(bytes(p)) for p in c.demux(s) if p.size]


@pytest.mark.parametrize("codec", sorted(AUDIO))
def test_audio_codec_by_container(codec: str, inputs, session, tmp_path: Path, caplog) -> None:
    src = inputs[codec]
    name, payloads = audio_payloads(src)
    for ext, video in OUTPUTS.items():
        dst = tmp_path / f"out.{ext}"
        caplog.clear()
        with caplog.at_level("INFO", logger="vsr"):
            session.config = session.config.replace(codec=video)
            upscale_file(session, src, dst)  # never a failure
        got_name, got = audio_payloads(dst)
        notices = [r.getMessage() for r in caplog.records if "converting to" in r.getMessage()]
        if (codec, ext) in CONVERTED:
            assert got_name == ("opus" if ext == "webm" else "aac"), (codec, ext, got_name)
            assert len(notices) == 1 and codec in notices[0], (codec, ext, notices)
        else:
            assert got_name == name and got == payloads, f"{codec} in .{ext}: copied packet for packet"
            assert notices == [], (codec, ext, notices)
        dst.unlink()


def test_wmv_becomes_mkv_with_its_audio_converted(tmp_path: Path, capsys) -> None:
    """wmv2 + wmav2 (Windows Media): the default output is Matroska, which cannot hold wmav2."""
    from vsr.cli import main

    src = tmp_path / "old.wmv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:rate=10:duration=1", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=1", "-c:v", "wmv2", "-c:a", "wmav2", str(src))
    assert main(["run", str(src), "--model", "bicubic", "--preset", "ultrafast", "--progress", "none"]) == 0
    err = capsys.readouterr().err
    assert "converting to AAC" in err
    out = tmp_path / "old_x4.mkv"
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.codec.name == "aac" and c.streams.video[0].width == 128
