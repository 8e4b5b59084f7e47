"""Encode upscaled frames with PyAV; the other streams come along through ``streams.StreamCopier``.

The video stream keeps the input's time base, and each output frame carries its input frame's pts,
so variable frame rate and start offsets survive. Colour tags, sample aspect ratio, rotation and
the stream's own metadata are carried over; frames go from RGB to YUV with the input's matrix.
"""

from __future__ import annotations

import logging
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from vsr.errors import ProcessingError, UsageError
from vsr.video.color import UNSPECIFIED, ColorTags, YuvConverter, matrix
from vsr.video.encoders import MP4_HEVC_TAG, EncodeSettings
from vsr.video.reader import Frame, VideoInfo
from vsr.video.sequence import frame_path, matches, sequence_name
from vsr.video.streams import StreamCopier

log = logging.getLogger("vsr")

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
# Tags for a source whose matrix is unspecified: make the guess explicit, since an SD source
# upscaled to HD would otherwise be guessed as BT.709 by players. AVCOL_* values.
SD_TAGS = (6, 6, 6)  # matrix, primaries, transfer: SMPTE 170M (BT.601 525-line)
HD_TAGS = (1, 1, 1)  # BT.709


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


def output_tags(info: VideoInfo) -> ColorTags:
    """The input's colour tags, with an unspecified matrix made explicit as the one vsr used."""
    tags = info.color
    if tags.colorspace != UNSPECIFIED:
        return tags
    hd = matrix(tags, info.height).name == "ITU709"
    space, prim, trc = HD_TAGS if hd else SD_TAGS
    return ColorTags(
        space,
        tags.color_range or 1,
        tags.color_primaries if tags.color_primaries != UNSPECIFIED else prim,
        tags.color_trc if tags.color_trc != UNSPECIFIED else trc,
    )


def open_output(path: Path, fmt: str) -> av.container.OutputContainer:
    """Create the (``.partial``) output container; MP4/MOV get faststart and custom metadata tags."""
    options = {"movflags": "+faststart+use_metadata_tags"} if fmt in MOV_FORMATS else {}
    try:
        return av.open(str(path), "w", format=fmt, options=options)
    except (OSError, av.error.FFmpegError) as e:
        raise UsageError(f"{path}: cannot create output ({e})") from e


def section_seconds(section_pts: tuple[int, int | None] | None, time_base: Fraction) -> tuple[float, float | None] | None:
    """A section in stream time-base units as (start, end or None) seconds, for the stream copier."""
    if section_pts is None:
        return None
    start, end = section_pts
    return float(start * time_base), None if end is None else float(end * time_base)


def tag_video(stream: av.stream.Stream, info: VideoInfo, fmt: str, codec: str) -> None:
    """Carry the input's colour tags (explicit where it had none), SAR, the stream's own tags and
    rotation to the output video stream; HEVC in MP4/MOV is tagged ``hvc1``."""
    cc = stream.codec_context
    output_tags(info).apply(cc)
    if info.sample_aspect_ratio:
        cc.sample_aspect_ratio = info.sample_aspect_ratio
    if codec == "hevc" and fmt in MOV_FORMATS:
        cc.codec_tag = MP4_HEVC_TAG
    for k, v in info.metadata.items():
        stream.metadata[k] = v
    if info.rotation:
        stream.set_display_rotation(info.rotation)


def add_other_streams(out: av.container.OutputContainer, video: av.stream.Stream, info: VideoInfo, audio: bool,
                      subtitles: bool, section: tuple[float, float | None] | None) -> StreamCopier | None:
    """The StreamCopier for the input's other streams (None for an image sequence, which has none);
    a timecode track of the input rides on the video stream's tags."""
    if info.is_sequence:
        return None
    copier = StreamCopier(info.path, out, audio, subtitles, section)
    if copier.timecode and "timecode" not in video.metadata:
        video.metadata["timecode"] = copier.timecode
    return copier


def finish_output(out: av.container.OutputContainer, copier: StreamCopier | None) -> None:
    """Mux the rest of the other streams and write the container's trailer."""
    try:
        if copier is not None:
            copier.pump(None)
        out.close()
    except (OSError, av.error.FFmpegError) as e:
        raise ProcessingError(f"{out.name}: finishing the output failed ({e})") from e


def release_output(out: av.container.OutputContainer, copier: StreamCopier | None) -> None:
    """Close the second demuxer and the container without finishing the file (the caller removes it)."""
    if copier is not None:
        copier.close()
    try:
        out.close()
    except (OSError, av.error.FFmpegError):
        pass


class IncreasingPts:
    """Output pts must increase; damaged input timestamps (repeated or going back) are moved one tick
    after the frame before, and counted."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.repaired = 0  # frames moved

    def __call__(self, pts: int) -> int:
        if self.last is not None and pts <= self.last:
            pts = self.last + 1
            self.repaired += 1
        self.last = pts
        return pts


class VideoWriter:
    """Write frames of one size to ``path`` (a ``.partial`` file) in muxer ``fmt``."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        info: VideoInfo,
        size: tuple[int, int],
        settings: EncodeSettings,
        audio: bool = True,
        subtitles: bool = True,
        section_pts: tuple[int, int | None] | None = None,
        metadata: dict[str, str] | None = None,
        other_streams: bool = True,
    ) -> None:
        self.out = open_output(path, fmt)
        self.info, self.size = info, size
        self.time_base = info.time_base
        # Section runs (--start) start the output at zero: every stream shifts by the section start.
        self.offset = section_pts[0] if section_pts else 0
        self.copier: StreamCopier | None = None
        try:
            self.stream = self._add_video(fmt, settings)
            if other_streams:  # False for a segment of a split run: the join adds them once
                self.copier = add_other_streams(self.out, self.stream, info, audio, subtitles,
                                                section_seconds(section_pts, self.time_base))
            self.out.metadata.update(metadata or {})
        except BaseException:
            self.abort()
            raise
        self.convert = YuvConverter(output_tags(info), settings.pix_fmt, size[1])
        self._durations: dict[int, int] = {}
        self.increasing = IncreasingPts()
        self.frames = 0

    @property
    def repaired_pts(self) -> int:
        """Frames whose input pts did not increase, moved one tick later."""
        return self.increasing.repaired

    def _add_video(self, fmt: str, settings: EncodeSettings) -> av.video.stream.VideoStream:
        info = self.info
        options = settings.options_with_hdr(info.hdr, info.path.name)
        try:
            vs = self.out.add_stream(settings.codec, rate=info.frame_rate or Fraction(25), options=options)
        except (ValueError, av.error.FFmpegError) as e:
            raise UsageError(f"cannot use encoder {settings.codec!r} ({e})") from e
        vs.width, vs.height = self.size
        vs.pix_fmt = settings.pix_fmt
        vs.time_base = self.time_base
        vs.codec_context.time_base = self.time_base
        tag_video(vs, info, fmt, codec_family(settings.codec))
        return vs

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.pts in self._durations:
                packet.duration = self._durations.pop(packet.pts)
            if self.copier is not None and packet.dts is not None:
                self.copier.pump(float((packet.dts + self.offset) * packet.time_base))
            self.out.mux(packet)

    def write(self, frame: Frame) -> None:
        assert frame.image.shape[1::-1] == self.size, "writer gets frames of the size it was opened with"
        vf = self.convert(frame.image)
        vf.pts = self.increasing(frame.pts - self.offset)
        vf.time_base = self.time_base
        if frame.duration:
            self._durations[vf.pts] = frame.duration
        try:
            self._mux_video(self.stream.encode(vf))
        except (OSError, av.error.FFmpegError) as e:
            raise ProcessingError(f"{self.out.name}: encoding failed ({e})") from e
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and the other streams and finish the file."""
        try:
            try:
                self._mux_video(self.stream.encode(None))
            except (OSError, av.error.FFmpegError) as e:
                raise ProcessingError(f"{self.out.name}: finishing the output failed ({e})") from e
            finish_output(self.out, self.copier)
        finally:
            self.abort()

    def abort(self) -> None:
        """Release everything without finishing the file (the caller removes it)."""
        release_output(self.out, self.copier)
        self.copier = None


class SequenceWriter:
    """Writes frame N (1-based, as FFmpeg numbers) to ``pattern % N``; atomic for the whole sequence:
    frames go to a hidden partial folder and move into place when the last one is written."""

    def __init__(self, pattern: Path, overwrite: bool) -> None:
        if pattern.suffix.lower() not in IMAGE_CODECS:
            raise UsageError(f"{pattern}: a frame pattern needs an image extension ({', '.join(IMAGE_CODECS)})")
        if not overwrite and matches(pattern):
            raise UsageError(f"{pattern}: frames of this pattern exist; pass --overwrite to replace them")
        self.pattern = pattern
        self.partial = pattern.parent / f".{sequence_name(pattern) or 'frames'}.vsr-partial"
        shutil.rmtree(self.partial, ignore_errors=True)
        try:
            self.partial.mkdir(parents=True)
        except OSError as e:
            raise UsageError(f"{pattern.parent}: cannot write frames there ({e.strerror})") from e
        self.frames = 0
        self.copier = None

    def write(self, frame: Frame) -> None:
        self.frames += 1
        write_image(self.partial / frame_path(self.pattern, self.frames).name, frame.image, self.pattern.suffix)

    def close(self) -> None:
        try:
            for f in sorted(self.partial.iterdir()):
                f.replace(self.pattern.parent / f.name)
        except OSError as e:
            raise ProcessingError(f"{self.pattern}: cannot move the finished frames into place ({e})") from e
        finally:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


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
