"""Encode upscaled frames with PyAV; the other streams come along through ``streams.StreamCopier``.

Every writer of a video output — ``VideoWriter`` here, ``FFmpegWriter`` (vsr.media.ffmpeg.writer) and
``SequenceWriter`` (vsr.media.images) — implements :class:`FrameWriter`: ``write(frame)`` in order,
then ``close()`` to finish the file (returns a :class:`WriteReport`) or ``abort()`` to release it
unfinished. The video stream keeps the input's time base and each output frame carries its input
frame's pts, so variable frame rate and start offsets survive. Colour tags, sample aspect ratio,
rotation and the stream's own metadata are carried over; frames go from RGB to YUV with the input's
matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av

from vsr.errors import ProcessingError, UsageError
from vsr.media.codecs import MP4_HEVC_TAG, EncodeSettings
from vsr.media.color import UNSPECIFIED, ColorTags, YuvConverter, is_rgb, matrix
from vsr.media.containers import MOV_FORMATS, codec_family
from vsr.media.ffmpeg.aspect import needs_aspect, restore_aspect
from vsr.media.frame import Frame, VideoInfo
from vsr.media.streams import StreamCopier
from vsr.media.timeline import Continuity

log = logging.getLogger("vsr")

# Tags for a source whose matrix is unspecified: make the guess explicit, since an SD source
# upscaled to HD would otherwise be guessed as BT.709 by players. AVCOL_* values.
SD_TAGS = (6, 6, 6)  # matrix, primaries, transfer: SMPTE 170M (BT.601 525-line)
HD_TAGS = (1, 1, 1)  # BT.709


@dataclass
class WriteReport:
    """What a writer did, returned by ``close()``."""

    frames: int  # frames written
    repaired_pts: int = 0  # frames whose input pts did not increase, moved (damaged input)
    copied_packets: int = 0  # packets of the other streams muxed beside the video
    first_pts: int | None = None  # input pts of the first frame written (before any repair)
    last_pts: int | None = None  # ... and of the last
    splices: int = 0  # places where the timestamps went back and the rest was shifted (video and copied)


def report(frames: int, timeline: Continuity, copier: StreamCopier | None) -> WriteReport:
    """A writer's report from its video timeline and its copier."""
    return WriteReport(frames, timeline.repaired, copier.copied if copier is not None else 0, timeline.first_in,
                       timeline.last_in, timeline.splices + (copier.splices if copier is not None else 0))


class FrameWriter(Protocol):
    """An output being written: frames in order, then ``close()`` (finished) or ``abort()``."""

    def write(self, frame: Frame) -> None: ...

    def close(self) -> WriteReport: ...

    def abort(self) -> None: ...


def output_tags(info: VideoInfo) -> ColorTags:
    """The input's colour tags, with an unspecified matrix made explicit as the one vsr used. An RGB
    source (PNG, TIFF frames) has no YUV matrix or range: its YUV output gets the players' defaults,
    limited range and the matrix its size calls for."""
    tags = info.color
    if is_rgb(info.pix_fmt):
        tags = ColorTags(UNSPECIFIED, 1, tags.color_primaries, tags.color_trc)
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


def custom_tags(fmt: str, info: VideoInfo) -> bool:
    """Whether the output keeps tags of any name (vsr's provenance): always, except MP4/MOV with cover
    art, where FFmpeg's custom-tag mode (use_metadata_tags) drops the picture."""
    return not (fmt in MOV_FORMATS and info.cover_art)


def open_output(path: Path, fmt: str, info: VideoInfo) -> av.container.OutputContainer:
    """Create the (``.partial``) output container; MP4/MOV get faststart (and custom tags, see
    custom_tags)."""
    flags = "+faststart+use_metadata_tags" if custom_tags(fmt, info) else "+faststart"
    options = {"movflags": flags} if fmt in MOV_FORMATS else {}
    try:
        return av.open(str(path), "w", format=fmt, options=options)
    except (OSError, av.error.FFmpegError) as e:
        raise UsageError(f"{path}: cannot create output ({e})") from e


def tag_output(out: av.container.OutputContainer, info: VideoInfo, metadata: dict[str, str]) -> None:
    """The container tags; where only standard tags survive (custom_tags), vsr's provenance goes into
    the comment, unless the input had one."""
    out.metadata.update(metadata)
    if not custom_tags(out.format.name, info) and "vsr" in metadata:
        out.metadata.setdefault("comment", metadata["vsr"])


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
    copier = StreamCopier(info.path, out, audio, subtitles, section, info.stream_index)
    if copier.timecode and "timecode" not in video.metadata:
        video.metadata["timecode"] = copier.timecode
    return copier


def finish_output(out: av.container.OutputContainer, copier: StreamCopier | None, info: VideoInfo,
                  size: tuple[int, int]) -> None:
    """Mux the rest of the other streams and write the container's trailer; then, for Matroska and
    WebM, the video's aspect ratio (vsr.media.ffmpeg.aspect)."""
    try:
        if copier is not None:
            copier.pump(None)
        out.close()
    except (OSError, av.error.FFmpegError) as e:
        raise ProcessingError(f"{out.name}: finishing the output failed ({e})") from e
    fmt = out.format.name
    if needs_aspect(fmt, info.sample_aspect_ratio):
        restore_aspect(Path(out.name), fmt, *size, info.sample_aspect_ratio)


def release_output(out: av.container.OutputContainer, copier: StreamCopier | None) -> None:
    """Close the second demuxer and the container without finishing the file (the caller removes it)."""
    if copier is not None:
        copier.close()
    try:
        out.close()
    except (OSError, av.error.FFmpegError):
        pass


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
        self.out = open_output(path, fmt, info)
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
            tag_output(self.out, info, metadata or {})
        except BaseException:
            self.abort()
            raise
        self.convert = YuvConverter(output_tags(info), settings.pix_fmt, size[1])
        self._durations: dict[int, int] = {}
        self.timeline = Continuity(self.time_base)
        self.frames = 0

    def _add_video(self, fmt: str, settings: EncodeSettings) -> av.video.stream.VideoStream:
        info = self.info
        options = settings.options_with_hdr(info.hdr, info.path.name)
        settings.silence()
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
                self.copier.pump(float(packet.dts * packet.time_base))
            self.out.mux(packet)

    def write(self, frame: Frame) -> None:
        assert frame.image.shape[1::-1] == self.size, "writer gets frames of the size it was opened with"
        vf = self.convert(frame.image)
        vf.pts = self.timeline(frame.pts - self.offset, frame.duration)
        vf.time_base = self.time_base
        if frame.duration:
            self._durations[vf.pts] = frame.duration
        try:
            self._mux_video(self.stream.encode(vf))
        except (OSError, av.error.FFmpegError) as e:
            raise ProcessingError(f"{self.out.name}: encoding failed ({e})") from e
        self.frames += 1

    def close(self) -> WriteReport:
        """Flush the encoder and the other streams and finish the file."""
        try:
            try:
                self._mux_video(self.stream.encode(None))
            except (OSError, av.error.FFmpegError) as e:
                raise ProcessingError(f"{self.out.name}: finishing the output failed ({e})") from e
            finish_output(self.out, self.copier, self.info, self.size)
            return report(self.frames, self.timeline, self.copier)
        finally:
            self.abort()

    def abort(self) -> None:
        """Release everything without finishing the file (the caller removes it)."""
        release_output(self.out, self.copier)
        self.copier = None


