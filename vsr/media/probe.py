"""`vsr probe`: what is in a media file, as a dataclass, a table or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from vsr.errors import InputError
from vsr.media.codecs import bit_depth, chroma
from vsr.media.filters import wants_deinterlace
from vsr.media.frame import FIELD_ORDERS

PROBE_PACKETS = 64  # packets read at most to find a stream's first frame
IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "tiff_pipe", "bmp_pipe", "webp_pipe", "dpx_pipe")


@dataclass
class StreamInfo:
    index: int
    type: str  # video | audio | subtitle | data | attachment
    codec: str | None
    time_base: str | None
    start_time: float | None  # seconds
    duration: float | None  # seconds
    frames: int | None  # from the container header; None when it does not say
    language: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    bit_depth: int | None = None
    frame_rate: str | None = None  # average, as a fraction
    chroma: str | None = None  # 420 | 422 | 444 | gray
    color_range: str | None = None  # tv (limited) | pc (full) | unknown
    colorspace: str | None = None  # matrix, e.g. bt709, bt470bg, bt2020nc
    color_primaries: str | None = None
    color_trc: str | None = None
    sample_aspect_ratio: str | None = None
    display_aspect_ratio: str | None = None
    rotation: int | None = None  # degrees, from the display matrix
    field_order: str | None = None  # progressive | tt | bb | tb | bt | unknown | interlaced (parity per frame)
    field_order_from: str = "stream"  # stream (its header) | frames (the first frame's flags)
    deinterlaced_by_run: bool | None = None  # whether `vsr run` deinterlaces it (deinterlace auto)
    title: str | None = None
    disposition: list[str] | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass
class MediaInfo:
    path: str
    format: str
    duration: float | None  # seconds
    start_time: float | None  # seconds
    is_image: bool
    streams: list[StreamInfo] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.type == "video"), None)


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` read-only with PyAV, turning every failure into an InputError naming the file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a media file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        return av.open(str(p), "r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{p}: not a readable video or image ({e.__class__.__name__}: {e})") from e


def made_by_vsr(path: str | Path) -> bool:
    """Whether the file carries vsr's provenance tag (the ``vsr`` tag, or a comment it wrote)."""
    try:
        with av.open(str(path), "r") as c:
            meta = {k.lower(): v for k, v in c.metadata.items()}
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False
    return "vsr" in meta or meta.get("comment", "").startswith("vsr ")


def is_attached_picture(stream: av.stream.Stream) -> bool:
    """Cover art: a video stream that is one still picture (attached_pic disposition)."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def describe(stream: av.stream.Stream) -> str:
    """``#1 h264 1280x720 (default)``: a video stream as messages name it."""
    cc = stream.codec_context
    size = f" {cc.width}x{cc.height}" if cc is not None and cc.width else ""
    marks = [m for m, on in (("default", stream.disposition & av.stream.Disposition.default),
                             ("cover art", is_attached_picture(stream))) if on]
    return f"#{stream.index} {cc.name if cc is not None else 'unknown'}{size}" + (f" ({', '.join(marks)})" if marks else "")


def choose_video_stream(container: av.container.InputContainer, index: int | None = None,
                        path: object = "") -> av.video.stream.VideoStream:
    """The video stream a run upscales: stream ``index`` (as `vsr probe` numbers them) when given;
    else the default-disposition stream that is not cover art, else the first that is not cover art,
    else the first video stream. InputError when there is none (or ``index`` is not a video stream)."""
    videos = list(container.streams.video)
    if index is not None:
        chosen = next((s for s in videos if s.index == index), None)
        if chosen is None:
            listed = ", ".join(describe(s) for s in videos) or "none"
            raise InputError(f"{path}: `video_stream` {index} is not a video stream (video streams: {listed})")
        return chosen
    if not videos:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise InputError(f"{path}: has no video stream ({', '.join(kinds)})")
    moving = [s for s in videos if not is_attached_picture(s)]
    default = [s for s in moving if s.disposition & av.stream.Disposition.default]
    return (default or moving or videos)[0]


def _bit_depth(pix_fmt: str | None) -> int | None:
    if not pix_fmt:
        return None
    try:
        return bit_depth(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return None


def probe(path: str | Path) -> MediaInfo:
    with open_input(path) as c:
        info = MediaInfo(
            path=str(path),
            format=c.format.name,
            duration=c.duration / av.time_base if c.duration is not None else None,
            start_time=c.start_time / av.time_base if c.start_time is not None else None,
            is_image=c.format.name in IMAGE_FORMATS,
        )
        for s in c.streams:
            cc = s.codec_context
            si = StreamInfo(
                index=s.index,
                type=s.type,
                codec=cc.name if cc is not None else None,
                time_base=str(s.time_base) if s.time_base else None,
                start_time=_seconds(s.start_time, s.time_base),
                duration=_seconds(s.duration, s.time_base),
                frames=s.frames or None,
                language=s.language,
            )
            si.title = s.metadata.get("title")
            si.disposition = [f.name for f in type(s.disposition) if f and f in s.disposition] or None
            if s.type == "video" and cc is not None:
                _video_details(path, s, si)
            elif s.type == "audio" and cc is not None:
                si.sample_rate, si.channels = cc.sample_rate, cc.channels
            info.streams.append(si)
    return info


COLOR_NAMES = {
    "colorspace": {0: "gbr", 1: "bt709", 2: None, 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                   9: "bt2020nc", 10: "bt2020c"},
    "primaries": {1: "bt709", 2: None, 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020",
                  11: "smpte431", 12: "smpte432"},
    "trc": {1: "bt709", 2: None, 4: "gamma22", 5: "gamma28", 6: "smpte170m", 8: "linear", 13: "iec61966-2-1",
            14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"},
}
RANGES = {0: None, 1: "tv", 2: "pc"}


def first_frame(path: str | Path, index: int, limit: int = PROBE_PACKETS) -> av.VideoFrame | None:
    """The first frame stream ``index`` decodes to, from a container of its own (at most ``limit``
    packets read; damage skipped); None when none comes out."""
    try:
        with open_input(path) as c:
            stream = c.streams[index]
            for n, packet in enumerate(c.demux(stream)):
                if n >= limit:
                    return None
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                if frames:
                    return frames[0]
    except (InputError, av.error.FFmpegError, OSError):
        pass
    return None


def _video_details(path: str | Path, s: av.stream.Stream, si: StreamInfo) -> None:
    """The stream's own tags, completed from its first frame the way `vsr run` completes them: colour
    tags, rotation, and whether it is interlaced (DV in AVI says so only in its frames' flags)."""
    cc = s.codec_context
    si.width, si.height = cc.width, cc.height
    si.pix_fmt = cc.pix_fmt
    si.bit_depth = _bit_depth(cc.pix_fmt)
    si.chroma = chroma(cc.pix_fmt) if cc.pix_fmt else None
    rate = s.average_rate or s.guessed_rate
    si.frame_rate = str(rate) if rate else None
    si.sample_aspect_ratio = str(s.sample_aspect_ratio) if s.sample_aspect_ratio else None
    si.display_aspect_ratio = str(s.display_aspect_ratio) if s.display_aspect_ratio else None
    si.field_order = FIELD_ORDERS.get(int(cc.field_order or 0), "unknown")
    tags: av.VideoFrame | av.codec.context.CodecContext = cc
    frame = first_frame(path, s.index)
    if frame is not None:
        si.rotation = int(frame.rotation or 0)
        if si.field_order in ("progressive", "unknown") and frame.interlaced_frame:
            si.field_order = "interlaced"  # the parity is each frame's (the deinterlacer reads it from them)
            si.field_order_from = "frames"
        if int(frame.colorspace) != 2 or int(frame.color_range):
            tags = frame  # the run converts with the frame's tags where it has them
    si.deinterlaced_by_run = wants_deinterlace("auto", si.field_order, bool(frame is not None and frame.interlaced_frame))
    si.color_range = RANGES.get(int(tags.color_range))
    si.colorspace = COLOR_NAMES["colorspace"].get(int(tags.colorspace), str(int(tags.colorspace)))
    si.color_primaries = COLOR_NAMES["primaries"].get(int(tags.color_primaries), str(int(tags.color_primaries)))
    si.color_trc = COLOR_NAMES["trc"].get(int(tags.color_trc), str(int(tags.color_trc)))


def format_table(info: MediaInfo) -> str:
    lines = [
        f"{info.path}: {info.format}"
        + (f", duration {info.duration:.3f} s" if info.duration is not None else "")
        + (f", start {info.start_time:.3f} s" if info.start_time is not None else "")
    ]
    for s in info.streams:
        parts = [f"  #{s.index} {s.type}: {s.codec}"]
        if s.type == "video":
            parts.append(f"{s.width}x{s.height} {s.pix_fmt} ({s.bit_depth}-bit {s.chroma})" if s.pix_fmt
                         else f"{s.width}x{s.height}, pixel format unknown (nothing decodes)")
            if s.frame_rate:
                parts.append(f"{float(Fraction(s.frame_rate)):.3f} fps")
            color = "/".join(str(x) for x in (s.colorspace, s.color_primaries, s.color_trc) if x)
            parts.append(f"colour {s.color_range or 'unknown range'} {color or 'untagged'}")
            if s.sample_aspect_ratio and s.sample_aspect_ratio != "1":
                parts.append(f"SAR {s.sample_aspect_ratio} (DAR {s.display_aspect_ratio})")
            if s.rotation:
                parts.append(f"rotation {s.rotation}°")
            if s.field_order in ("progressive", "unknown"):
                parts.append("progressive")
            else:
                order = "from the frames' flags" if s.field_order_from == "frames" else s.field_order
                parts.append(f"interlaced ({order})")
            if s.deinterlaced_by_run:
                parts.append("vsr run deinterlaces it")
        if s.type == "audio":
            parts.append(f"{s.sample_rate} Hz, {s.channels} ch")
        if s.duration is not None:
            parts.append(f"{s.duration:.3f} s")
        if s.frames:
            parts.append(f"{s.frames} frames")
        if s.start_time is not None:
            parts.append(f"start {s.start_time:.3f} s")
        if s.language:
            parts.append(f"lang {s.language}")
        if s.title:
            parts.append(f"title {s.title!r}")
        if s.disposition:
            parts.append("+".join(s.disposition))
        lines.append(", ".join(parts))
    return "\n".join(lines)
