"""Encode upscaled frames with PyAV and copy the input's other streams packet for packet.

The video stream keeps the input's time base, and each output frame carries its input frame's pts,
so variable frame rate and start offsets survive. Audio packets are read by a second demuxer of the
input and muxed in time order beside the video, payload untouched: no re-encode, no drift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr.errors import ProcessingError, UsageError
from vsr.video.probe import open_input
from vsr.video.reader import Frame, VideoInfo

log = logging.getLogger(__name__)

# Output extension → (PyAV/FFmpeg muxer, video codecs it holds (None: any), keeps arbitrary timestamps)
CONTAINERS: dict[str, tuple[str, frozenset[str] | None, bool]] = {
    ".mp4": ("mp4", frozenset({"h264", "hevc", "av1", "mpeg4", "vp9", "mpeg2video"}), True),
    ".m4v": ("mp4", frozenset({"h264", "hevc", "av1", "mpeg4"}), True),
    ".mov": ("mov", frozenset({"h264", "hevc", "av1", "mpeg4", "prores", "ffv1", "mjpeg"}), True),
    ".mkv": ("matroska", None, True),
    ".webm": ("webm", frozenset({"vp8", "vp9", "av1"}), True),
    ".ts": ("mpegts", frozenset({"h264", "hevc", "mpeg2video"}), True),
    ".m2ts": ("mpegts", frozenset({"h264", "hevc", "mpeg2video"}), True),
    ".flv": ("flv", frozenset({"h264"}), True),
    ".avi": ("avi", None, False),
}
FALLBACK_EXT = ".mkv"  # holds every codec and keeps every timestamp
FASTSTART_FORMATS = ("mp4", "mov")
# Image outputs: extension → (encoder, pixel format for 8-bit, for 16-bit)
IMAGE_CODECS: dict[str, tuple[str, str, str]] = {
    ".png": ("png", "rgb24", "rgb48be"),
    ".tif": ("tiff", "rgb24", "rgb48le"),
    ".tiff": ("tiff", "rgb24", "rgb48le"),
    ".jpg": ("mjpeg", "yuvj444p", "yuvj444p"),
    ".jpeg": ("mjpeg", "yuvj444p", "yuvj444p"),
    ".bmp": ("bmp", "bgr24", "bgr24"),
}
JPEG_QSCALE = 2  # mjpeg quantiser: 2 is the best quality ffmpeg users pass (-q:v 2)


@dataclass
class EncodeSettings:
    codec: str = "libx264"  # FFmpeg encoder name
    crf: int = 18  # x264 scale; 18 is visually lossless for most content
    preset: str = "medium"
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)  # passed through to the encoder

    def codec_options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.codec in ("libx264", "libx265", "libx264rgb"):
            opts.update(crf=str(self.crf), preset=self.preset)
        elif self.codec in ("libsvtav1", "libvpx-vp9", "libaom-av1"):
            opts.update(crf=str(self.crf))
            if self.codec == "libvpx-vp9":
                opts["b"] = "0"
        opts.update(self.options)
        return opts


def codec_family(encoder: str) -> str:
    """'libx264' → 'h264': the codec an encoder produces, or UsageError for an unknown encoder."""
    try:
        codec = av.Codec(encoder, "w")
    except (ValueError, av.error.FFmpegError) as e:
        raise UsageError(f"unknown encoder {encoder!r}; for example libx264, libx265, libsvtav1, ffv1") from e
    if codec.type != "video":
        raise UsageError(f"encoder {encoder!r} is not a video encoder")
    return codec.canonical_name


def container_for(ext: str) -> str:
    if ext.lower() not in CONTAINERS:
        raise UsageError(f"cannot write {ext!r} files; use one of {', '.join(CONTAINERS)}")
    return CONTAINERS[ext.lower()][0]


def container_holds(ext: str, encoder: str, vfr: bool = True) -> bool:
    entry = CONTAINERS.get(ext.lower())
    if entry is None:
        return False
    _, codecs, keeps_timing = entry
    return (codecs is None or codec_family(encoder) in codecs) and (keeps_timing or not vfr)


def needs_even(pix_fmt: str) -> tuple[bool, bool]:
    """(width must be even, height must be even) for a chroma-subsampled pixel format."""
    fmt = av.VideoFormat(pix_fmt)
    return fmt.chroma_width(3) != 3, fmt.chroma_height(3) != 3


class StreamCopier:
    """Copies the input's audio streams packet for packet into ``out``, in time order."""

    def __init__(self, source: Path, out: av.container.OutputContainer, section: tuple[float, float | None] | None):
        self.src = open_input(source)
        self.section = section  # (start seconds, end seconds or None), in the input's timeline
        self.map: dict[int, av.stream.Stream] = {}
        for s in self.src.streams.audio:
            if s.codec_context.name not in out.supported_codecs:
                log.warning("dropping audio stream #%d: %s cannot hold %s", s.index, out.format.name, s.codec_context.name)
                continue
            self.map[s.index] = out.add_stream_from_template(s)
        self.out = out
        self.copied = 0
        self._pending: av.Packet | None = None
        self._packets = self.src.demux([self.src.streams[i] for i in self.map]) if self.map else iter(())

    def _shift(self, packet: av.Packet) -> bool:
        """Apply the section offset; False when the packet lies outside the section."""
        if self.section is None or packet.pts is None:
            return True
        start, end = self.section
        t = float(packet.pts * packet.time_base)
        if t < start or (end is not None and t >= end):
            return False
        offset = round(start / packet.time_base)
        packet.pts -= offset
        if packet.dts is not None:
            packet.dts -= offset
        return True

    def pump(self, until: float | None) -> None:
        """Mux every copied packet whose decode time is at or before ``until`` seconds (None: all)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.size == 0:  # demuxer flush packet
                continue
            ts = packet.dts if packet.dts is not None else packet.pts
            if until is not None and ts is not None and float(ts * packet.time_base) > until:
                self._pending = packet
                return
            if not self._shift(packet):
                continue
            packet.stream = self.map[packet.stream_index]
            self.out.mux(packet)
            self.copied += 1

    def close(self) -> None:
        self.src.close()


class VideoWriter:
    """Write frames of one size to ``path`` (a ``.partial`` file) in muxer ``fmt``."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        info: VideoInfo,
        size: tuple[int, int],
        settings: EncodeSettings,
        copy_audio: bool = True,
        section_pts: tuple[int, int | None] | None = None,
    ) -> None:
        options = {"movflags": "+faststart"} if fmt in FASTSTART_FORMATS else {}
        try:
            self.out = av.open(str(path), "w", format=fmt, options=options)
        except (OSError, av.error.FFmpegError) as e:
            raise UsageError(f"{path}: cannot create output ({e})") from e
        self.info, self.size = info, size
        self.time_base = info.time_base
        # Section runs (--start) start the output at zero: every stream shifts by the section start.
        self.offset = section_pts[0] if section_pts else 0
        rate = info.frame_rate or Fraction(25)
        try:
            vs = self.out.add_stream(settings.codec, rate=rate, options=settings.codec_options())
        except (ValueError, av.error.FFmpegError) as e:
            self.out.close()
            raise UsageError(f"cannot use encoder {settings.codec!r} ({e})") from e
        vs.width, vs.height = size
        vs.pix_fmt = settings.pix_fmt
        vs.time_base = self.time_base
        vs.codec_context.time_base = self.time_base
        if info.sample_aspect_ratio:
            vs.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        self.stream = vs
        self.rgb_format = "rgb24" if info.bit_depth <= 8 else "rgb48le"
        seconds = None
        if section_pts is not None:
            start, end = section_pts
            seconds = (float(start * self.time_base), None if end is None else float(end * self.time_base))
        self.copier = StreamCopier(info.path, self.out, seconds) if copy_audio else None
        self._durations: dict[int, int] = {}
        self.frames = 0

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.pts in self._durations:
                packet.duration = self._durations.pop(packet.pts)
            if self.copier is not None and packet.dts is not None:
                self.copier.pump(float((packet.dts + self.offset) * packet.time_base))
            self.out.mux(packet)

    def write(self, frame: Frame) -> None:
        image = frame.image
        assert image.shape[1::-1] == self.size, "writer gets frames of the size it was opened with"
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=self.rgb_format)
        vf.pts = frame.pts - self.offset
        vf.time_base = self.time_base
        if frame.duration:
            self._durations[vf.pts] = frame.duration
        try:
            self._mux_video(self.stream.encode(vf))
        except (OSError, av.error.FFmpegError) as e:
            raise ProcessingError(f"{self.out.name}: encoding failed ({e})") from e
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and the copied streams and finish the file."""
        try:
            self._mux_video(self.stream.encode(None))
            if self.copier is not None:
                self.copier.pump(None)
            self.out.close()
        except (OSError, av.error.FFmpegError) as e:
            raise ProcessingError(f"{self.out.name}: finishing the output failed ({e})") from e
        finally:
            self.abort()

    def abort(self) -> None:
        """Release everything without finishing the file (the caller removes it)."""
        if self.copier is not None:
            self.copier.close()
            self.copier = None
        try:
            self.out.close()
        except (OSError, av.error.FFmpegError):
            pass


def write_image(path: Path, image: np.ndarray, ext: str) -> None:
    """Encode one RGB image (uint8 or uint16) with FFmpeg's image encoder for ``ext``."""
    if ext.lower() not in IMAGE_CODECS:
        raise UsageError(f"cannot write {ext!r} images; use one of {', '.join(IMAGE_CODECS)}")
    encoder, fmt8, fmt16 = IMAGE_CODECS[ext.lower()]
    src = "rgb48le" if image.dtype == np.uint16 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=src)
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = fmt16 if image.dtype == np.uint16 else fmt8
    ctx.time_base = Fraction(1, 25)
    if encoder == "mjpeg":
        ctx.qscale = JPEG_QSCALE
        ctx.options = {"qmin": str(JPEG_QSCALE), "qmax": str(JPEG_QSCALE)}
    frame = frame.reformat(format=ctx.pix_fmt)
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))
    try:
        path.write_bytes(data)
    except OSError as e:
        raise ProcessingError(f"{path}: cannot write image ({e.strerror})") from e
