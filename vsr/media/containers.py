"""What each output container can hold: the table of extensions, muxers and video codecs, image
outputs, and the checks made before anything is written."""

from __future__ import annotations

import io
from typing import Callable

import av

from vsr.errors import UsageError

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
# The encoder a container gets when the default one (libx264) cannot go in, as ffmpeg picks it.
CONTAINER_DEFAULTS = {".webm": "libvpx-vp9"}
MOV_FORMATS = ("mp4", "mov")  # faststart, custom metadata tags, hvc1
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


def container_holds(ext: str, encoder: str, vfr: bool = True, family: Callable[[str], str] | None = None) -> bool:
    """Whether files with ``ext`` hold what ``encoder`` makes (``family`` names its codec: PyAV's by
    default) and, for variable frame rate, keep arbitrary timestamps."""
    family = family or codec_family
    entry = CONTAINERS.get(ext.lower())
    if entry is None:
        return False
    _, codecs, keeps_timing = entry
    return (codecs is None or family(encoder) in codecs) and (keeps_timing or not vfr)


def needs_even(pix_fmt: str) -> tuple[bool, bool]:
    """(width must be even, height must be even) for a chroma-subsampled pixel format."""
    fmt = av.VideoFormat(pix_fmt)
    return fmt.chroma_width(3) != 3, fmt.chroma_height(3) != 3


def round_trips(fmt: str, stream: av.stream.Stream, packet: av.Packet | None) -> bool:
    """Whether muxer ``fmt`` really carries ``stream`` as it is: asked of FFmpeg itself, by muxing its
    first ``packet`` into memory and reading it back (a header FFmpeg writes without complaint is not
    enough: MPEG-TS takes any codec and leaves players an unknown data stream)."""
    key = (fmt, stream.type, stream.codec_context.codec.id if stream.codec_context else None,
           getattr(stream.codec_context, "sample_rate", None), getattr(stream.codec_context, "channels", None))
    if key not in _ROUND_TRIPS:
        _ROUND_TRIPS[key] = _round_trip(fmt, stream, packet)
    return _ROUND_TRIPS[key]


_ROUND_TRIPS: dict[tuple, bool] = {}


def _round_trip(fmt: str, stream: av.stream.Stream, packet: av.Packet | None) -> bool:
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=fmt) as out:
            dst = out.add_stream_from_template(stream)
            out.start_encoding()
            if packet is not None:
                packet.stream = dst
                out.mux(packet)
        buffer.seek(0)
        with av.open(buffer, "r", format=fmt) as back:
            want = stream.codec_context.codec.id
            return any(s.type == stream.type and s.codec_context is not None and s.codec_context.codec.id == want
                       for s in back.streams)
    except (ValueError, NotImplementedError, OSError, av.error.FFmpegError):
        return False
