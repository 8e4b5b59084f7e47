"""Decode the main video stream of an input with PyAV into RGB numpy frames, keeping their identity.

A ``Frame`` is ``(index, pts, time_base, duration, image)``: the decoder's timestamps travel with the
pixels end to end, so the writer can stamp each output frame with its input pts.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from vsr.errors import InputError, UsageError
from vsr.media.codecs import bit_depth
from vsr.media.color import ColorTags, Hdr10, RgbConverter
from vsr.media.decord_frames import decord_frames
from vsr.media.filters import Deinterlacer, wants_deinterlace
from vsr.media.frame import FIELD_ORDERS, STREAM_KEYS_DROPPED, Frame, VideoInfo
from vsr.media.probe import IMAGE_FORMATS, open_input
from vsr.media.sequence import is_sequence, open_sequence

DECODERS = ("pyav", "decord")  # --decoder choices; PyAV is the default and reads every bit depth
MAX_SIDE = 16384  # px; larger dimensions are treated as a damaged header, not an image to upscale


class VideoReader:
    """Iterate the frames of ``path``'s first video stream, optionally a section [start, start+duration)."""

    def __init__(
        self,
        path: str | Path,
        start: float | None = None,
        duration: float | None = None,
        deinterlace: str = "off",
        fps: float | None = None,
        decoder: str = "pyav",
    ) -> None:
        if decoder not in DECODERS:
            raise UsageError(f"`decoder` {decoder!r}: use one of {', '.join(DECODERS)}")
        self.decoder = decoder
        self.path = Path(path)
        self.start, self.duration, self.deinterlace = start, duration, deinterlace
        self.deinterlaced = False  # set by peek(): whether frames go through the deinterlacer
        self.damaged_packets = 0  # packets the decoder rejected (concealed damage)
        self.corrupt_frames = 0  # frames the decoder marked corrupt but could still output
        self.concealed_frames = 0  # frames of lost packets, written as a repeat of the frame before
        self._pending_pts: list[int] = []  # pts of demuxed packets whose frame has not come out yet
        self.sequence = is_sequence(self.path, fps)  # frames from a pattern or folder of images
        sequence_frames = None
        if self.sequence:
            self.container, sequence_frames = open_sequence(self.path, fps)
        else:
            self.container = open_input(self.path)
        try:
            self.stream = self._video_stream()
        except InputError:
            self.container.close()
            raise
        cc = self.stream.codec_context
        tb = self.stream.time_base or Fraction(1, 1000)
        rate = self.stream.average_rate or self.stream.guessed_rate
        frames = self.stream.frames or sequence_frames
        if duration is not None and rate:
            frames = math.ceil(duration * rate)
        elif start and frames and rate:
            frames = max(0, frames - math.floor(start * rate))
        elif frames is None and rate and self.stream.duration:
            frames = round(float(self.stream.duration * tb * rate))
        is_image = self.container.format.name in IMAGE_FORMATS and not self.sequence
        self.info = VideoInfo(
            path=self.path,
            width=cc.width,
            height=cc.height,
            pix_fmt=cc.pix_fmt,
            bit_depth=bit_depth(cc.pix_fmt),
            codec=cc.name,
            time_base=tb,
            frame_rate=Fraction(rate) if rate else None,
            frames=1 if is_image else frames,
            is_image=is_image,
            is_sequence=self.sequence,
            frames_listed=self.stream.frames or None,
            start_time=float((self.stream.start_time or 0) * tb),
            sample_aspect_ratio=self.stream.sample_aspect_ratio,
            color=ColorTags.of(cc),
            field_order=FIELD_ORDERS.get(int(cc.field_order or 0), "unknown"),
            metadata={k: v for k, v in self.stream.metadata.items()
                      if k.lower() not in STREAM_KEYS_DROPPED and not k.upper().startswith("DURATION")},
        )
        first = self.stream.start_time or 0
        start_pts = first + round((start or 0) / tb)
        end_pts = None if duration is None else start_pts + round(duration / tb)
        # The section in stream time-base units: [start, end); start is where the output's zero lies.
        self.section_pts: tuple[int, int | None] = (start_pts, end_pts)
        self._first: av.VideoFrame | None = None
        self._iter: Iterator[av.VideoFrame] | None = None

    @property
    def is_section(self) -> bool:
        """Whether only a section is read (start or duration): its output starts at zero."""
        return bool(self.start) or self.duration is not None

    def _video_stream(self) -> av.video.stream.VideoStream:
        """The first video stream, threaded decoding on, or InputError saying why it is unusable."""
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams}) or ["no streams"]
            raise InputError(f"{self.path}: has no video stream ({', '.join(kinds)})")
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        cc = stream.codec_context
        if cc is None:
            raise InputError(f"{self.path}: the video stream's codec is unknown to FFmpeg")
        if not cc.width or not cc.height or cc.pix_fmt is None:
            raise InputError(f"{self.path}: the video stream has no frame size or pixel format")
        if max(cc.width, cc.height) > MAX_SIDE:
            raise InputError(f"{self.path}: frame size {cc.width}x{cc.height} is over {MAX_SIDE} pixels a side")
        return stream

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; packets the decoder rejects are counted and skipped (concealed damage)."""
        for packet in self.container.demux(self.stream):
            if packet.pts is not None and packet.size:
                self._pending_pts.append(packet.pts)
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                self.damaged_packets += 1
            except av.error.FFmpegError as e:
                raise InputError(f"{self.path}: decoding failed ({e})") from e

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames of the section, with pts filled in."""
        tb = self.info.time_base
        step = int(1 / (self.info.frame_rate * tb)) if self.info.frame_rate else 1
        start_pts, end_pts = self.section_pts
        if self.start:
            # Seek to the keyframe at or before the start; frames before it are decoded and dropped.
            self.container.seek(start_pts, stream=self.stream, backward=True, any_frame=False)
        last_pts = None
        for vf in self._decoded():
            if vf.pts is None:
                vf.pts = last_pts + step if last_pts is not None else 0
            last_pts = vf.pts
            if self.start and vf.pts < start_pts:
                continue
            if end_pts is not None and vf.pts >= end_pts:
                return
            yield vf

    def peek(self) -> av.VideoFrame | None:
        """Decode the first frame of the section now (validates the input early, and its tags —
        colour, rotation, interlacing — complete ``info``); iteration still starts with it."""
        if self._first is None and self._iter is None:
            self._iter = self._frames()
            first = next(self._iter, None)
            if first is None:
                return None
            frame_tags = ColorTags.of(first)
            color = frame_tags if frame_tags.colorspace != 2 or frame_tags.color_range else self.info.color
            self.info = replace(self.info, color=color, rotation=int(first.rotation or 0), hdr=Hdr10.of(first))
            if wants_deinterlace(self.deinterlace, self.info.field_order, bool(first.interlaced_frame)):
                self._start_deinterlacer(first)
            else:
                self._first = first
        return self._first

    def _start_deinterlacer(self, first: av.VideoFrame) -> None:
        double = self.deinterlace == "double"
        deint = Deinterlacer(self.stream, self.info.field_order, double)
        self._iter = deint(_chain(first, self._iter))
        self._first = next(self._iter, None)
        self.deinterlaced = True
        if self._first is None:
            return
        old_tb, tb = self.info.time_base, self._first.time_base
        rate, frames = self.info.frame_rate, self.info.frames
        self.info = replace(
            self.info,
            time_base=tb,
            frame_rate=rate * 2 if rate and double else rate,
            frames=frames * 2 if frames and double else frames,
            field_order="progressive",
        )
        start, end = self.section_pts
        self.section_pts = (round(start * old_tb / tb), None if end is None else round(end * old_tb / tb))

    def __iter__(self) -> Iterator[Frame]:
        first = self.peek()
        if first is None:
            return
        if self.decoder == "decord":
            if self.deinterlaced or self.sequence:
                raise UsageError(f"{self.path}: `decoder` decord reads plain video files, without deinterlacing")
            yield from decord_frames(self.info, self.section_pts, self.is_section)
            return
        convert = RgbConverter(self.info.color, self.info.bit_depth)
        tb = self.info.time_base
        index, last_pts, image = 0, None, None
        self._first = None  # the chain holds it now; do not keep a decoded frame alive
        for vf in _chain(first, self._iter):
            if (vf.width, vf.height) != (self.info.width, self.info.height):
                raise InputError(
                    f"{self.path}: frame {index} is {vf.width}x{vf.height}, the stream started at "
                    f"{self.info.width}x{self.info.height}; size changes mid-stream are not supported"
                )
            if vf.is_corrupt:
                self.corrupt_frames += 1
            previous, image = image, convert(vf)
            for pts in self._conceal(last_pts, vf.pts):  # frames lost before this one
                yield Frame(index, pts, tb, None, previous if previous is not None else image)
                index += 1
            yield Frame(index, vf.pts, tb, vf.duration or None, image)
            index, last_pts = index + 1, vf.pts
        for pts in self._conceal(last_pts, None):  # frames lost at the end
            yield Frame(index, pts, tb, None, image)
            index += 1

    def _conceal(self, after: int | None, before: int | None) -> list[int]:
        """Pts of packets whose frame never came out (the decoder rejected or dropped it), strictly
        between two written frames: they are filled with a repeat of the frame before (what players
        show), so damage costs no frame and no time. Frames come out in pts order, so a packet pts
        below ``before`` that was not written is lost for good."""
        if self.deinterlaced or not self._pending_pts:
            return []
        start, end = self.section_pts
        lost = sorted(p for p in self._pending_pts if before is None or p < before)
        self._pending_pts = [p for p in self._pending_pts if before is not None and p > before]
        keep = [p for p in lost if (after is None or p > after) and (not self.start or p >= start)
                and (end is None or p < end)]
        self.concealed_frames += len(keep)
        return keep


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    del first
    yield from rest


def read_rgb(path: str | Path) -> list[np.ndarray]:
    """Every frame of ``path`` as an (H, W, 3) RGB array, as vsr reads them (for scripts and checks:
    the whole clip is held in memory)."""
    with VideoReader(path) as r:
        return [f.image for f in r]
