"""Build real test media with PyAV: clips with audio, VFR timing, odd sizes, images."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np

AUDIO_RATE = 48000  # Hz
AUDIO_FRAME = 1024  # samples per AAC frame
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()  # an ffmpeg binary, for media PyAV cannot write (subtitles, attachments)
GOP = 10  # frames per GOP of the open-GOP clips
OPEN_GOP = {"bf": "3", "g": str(GOP), "x264-params": f"open-gop=1:keyint={GOP}:min-keyint={GOP}:scenecut=0"}
VFR_PTS = [500, 533, 580, 590, 650, 700, 733, 800, 810, 900, 1001, 1040]  # ms, irregular, not from 0


def pattern(i: int, width: int, height: int, depth: int = 8) -> np.ndarray:
    """A moving gradient with a square: every frame different, smooth enough to encode well."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + 7 * i) % 256
    g = (y * 255 // max(height - 1, 1) + 3 * i) % 256
    b = ((x + y + 11 * i) % 64) * 4
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    s = max(2, min(width, height) // 4)
    ox, oy = (5 * i) % max(width - s, 1), (3 * i) % max(height - s, 1)
    img[oy : oy + s, ox : ox + s] = (255 - 10 * (i % 8), 40, 200)
    if depth > 8:
        return img.astype(np.uint16) * 257
    return img


def make_video(
    path: Path,
    pts: list[int] | None = None,
    n: int = 12,
    size: tuple[int, int] = (64, 48),
    time_base: Fraction = Fraction(1, 1000),
    rate: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_start: float | None = 0.0,
    audio_seconds: float | None = None,
    options: dict[str, str] | None = None,
) -> dict:
    """Write a clip; ``pts`` in ``time_base`` units (default: constant ``rate``). Frames carry explicit
    durations so the container records where the last one ends. Returns what was written."""
    width, height = size
    if pts is None:
        step = int(1 / (rate * time_base))
        pts = [i * step for i in range(n)]
    durations = [b - a for a, b in zip(pts, pts[1:])] + [pts[-1] - pts[-2] if len(pts) > 1 else 40]
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=rate, options=options or {})
    vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
    vs.time_base = time_base
    vs.codec_context.time_base = time_base
    aus = None
    if audio_start is not None:
        aus = out.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "stereo"
    for i, (p, d) in enumerate(zip(pts, durations)):
        frame = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
        frame.pts, frame.time_base, frame.duration = p, time_base, d
        for pk in vs.encode(frame):
            out.mux(pk)
    for pk in vs.encode():
        out.mux(pk)
    if aus is not None:
        seconds = audio_seconds if audio_seconds is not None else float((pts[-1] + durations[-1]) * time_base)
        start = round(audio_start * AUDIO_RATE)
        t = 0
        while t < seconds * AUDIO_RATE:
            tt = (np.arange(AUDIO_FRAME) + t) / AUDIO_RATE
            tone = (0.2 * np.sin(2 * np.pi * 440 * tt)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, start + t, Fraction(1, AUDIO_RATE)
            for pk in aus.encode(af):
                out.mux(pk)
            t += AUDIO_FRAME
        for pk in aus.encode():
            out.mux(pk)
    out.close()
    return {"pts": pts, "durations": durations, "time_base": time_base}


def make_image(path: Path, size: tuple[int, int] = (37, 29), depth: int = 8) -> np.ndarray:
    """Write a PNG/JPEG/TIFF with PyAV's image encoders; returns the RGB pixels written."""
    from vsr.media.images import write_image

    img = pattern(3, *size, depth=depth)
    if depth > 8:
        img = img + np.arange(img.size, dtype=np.uint16).reshape(img.shape) % 200  # not 8-bit values
    write_image(path, img, path.suffix)
    return img


def video_frames(path: Path) -> list[tuple[Fraction, int | None]]:
    """(pts in seconds, duration in time-base units) of every decoded frame of the first video stream."""
    with av.open(str(path)) as c:
        return [(f.pts * f.time_base, f.duration) for f in c.decode(c.streams.video[0])]


def decodable_times(path: Path) -> list[Fraction]:
    """Pts in seconds of every frame PyAV can decode from the first video stream, skipping the
    packets the decoder rejects (what a damaged file really holds)."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for packet in c.demux(s):
            try:
                out += [f.pts * f.time_base for f in packet.decode()]
            except av.error.InvalidDataError:
                continue
    return out


def packets(path: Path, kind: str = "audio") -> list[tuple[bytes, Fraction | None]]:
    """(payload, pts in seconds) of every packet of the first stream of ``kind``."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(bytes(p), p.pts * p.time_base if p.pts is not None else None) for p in c.demux(s) if p.size]


def stream_span(path: Path, kind: str = "video") -> tuple[Fraction, Fraction]:
    """(start, duration) in seconds of the first stream of ``kind``, as the container says."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return Fraction(s.start_time) * s.time_base, Fraction(s.duration or 0) * s.time_base


def write_frames(path: Path, frames: list[av.VideoFrame], codec: str, pix_fmt: str, rate: int = 25,
                 **codec_attrs: object) -> None:
    """Encode ready-made frames (pts 0, 1, 2, ... at ``rate``) into ``path``; ``codec_attrs`` are set on
    the encoder's context (colour tags, field order, ...)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = frames[0].width, frames[0].height, pix_fmt
        for key, value in codec_attrs.items():
            setattr(vs.codec_context, key, value)
        for i, frame in enumerate(frames):
            frame.pts = i
            for pk in vs.encode(frame):
                out.mux(pk)
        for pk in vs.encode():
            out.mux(pk)


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120)


def with_subtitles(base: Path, out: Path) -> Path:
    """``base`` remuxed into ``out`` with two SRT subtitles (at 0.1-0.9 s and 1.5-2.0 s)."""
    srt = base.with_suffix(".srt")
    srt.write_text("1\n00:00:00,100 --> 00:00:00,900\nHello\n\n2\n00:00:01,500 --> 00:00:02,000\nLater\n")
    ffmpeg("-i", str(base), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", str(out))
    return out
