"""Decode the main video stream of an input with PyAV into RGB numpy frames, keeping their identity.

A ``Frame`` is ``(index, pts, time_base, duration, image)``: the decoder's timestamps travel with the
pixels end to end, so the writer can stamp each output frame with its input pts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from vsr.errors import InputError, UsageError
from vsr.media.codecs import bit_depth
from vsr.media.color import ColorTags, Hdr10, RgbConverter
from vsr.media.decord_frames import decord_frames
from vsr.media.filters import Deinterlacer, wants_deinterlace
from vsr.media.frame import FIELD_ORDERS, STREAM_KEYS_DROPPED, Frame, VideoInfo
from vsr.media.probe import IMAGE_FORMATS, choose_video_stream, is_attached_picture, open_input
from vsr.media.seek import Keyframe, seek_keyframe
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
        video_stream: int | None = None,
        keyframe: Keyframe | None = None,
    ) -> None:
        """``video_stream``: the index of the stream to read (None: the default one, see
        probe.choose_video_stream); ``keyframe``: where a planned section's keyframe is (split runs)."""
        if decoder not in DECODERS:
            raise UsageError(f"`decoder` {decoder!r}: use one of {', '.join(DECODERS)}")
        self.decoder = decoder
        self.path = Path(path)
        self.start, self.duration, self.deinterlace = start, duration, deinterlace
        self.keyframe = keyframe
        self.deinterlaced = False  # set by peek(): whether frames go through the deinterlacer
        self.damaged_packets = 0  # packets the decoder rejected: their frames do not exist
        self.corrupt_frames = 0  # frames the decoder marked corrupt but could still output
        self.sequence = is_sequence(self.path, fps)  # frames from a pattern or folder of images
        sequence_frames = None
        if self.sequence:
            self.container, sequence_frames = open_sequence(self.path, fps)
        else:
            self.container = open_input(self.path)
        try:
            self.stream = self._video_stream(video_stream)
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
            stream_index=self.stream.index,
            cover_art=sum(is_attached_picture(s) for s in self.container.streams.video if s.index != self.stream.index),
            metadata={k: v for k, v in self.stream.metadata.items()
                      if k.lower() not in STREAM_KEYS_DROPPED and not k.upper().startswith("DURATION")},
        )
        first = self.stream.start_time or 0
        start_pts = first + ticks_at_or_after(start or 0, tb)
        end_pts = None if duration is None else first + ticks_at_or_after((start or 0) + duration, tb)
        # The section in stream time-base units: [start, end); start is where the output's zero lies.
        self.section_pts: tuple[int, int | None] = (start_pts, end_pts)
        self._first: av.VideoFrame | None = None
        self._iter: Iterator[av.VideoFrame] | None = None

    @property
    def is_section(self) -> bool:
        """Whether only a section is read (start or duration): its output starts at zero."""
        return bool(self.start) or self.duration is not None

    def _video_stream(self, index: int | None) -> av.video.stream.VideoStream:
        """The chosen video stream, threaded decoding on, or InputError saying why it is unusable."""
        stream = choose_video_stream(self.container, index, self.path)
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

    def _decoded(self, first: av.Packet | None = None) -> Iterator[av.VideoFrame]:
        """Decoded frames (from packet ``first`` on, when given); packets the decoder rejects are
        counted and skipped (their frames do not exist); a demuxer failure is an InputError."""
        packets = itertools.chain([first] if first is not None else [], self.container.demux(self.stream))
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError as e:
                raise InputError(f"{self.path}: reading the file failed ({e})") from e
            if packet is None:
                return
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
        first = None
        if self.start:
            # Decode from a keyframe at or before the start (checked: see vsr.media.seek); frames
            # before the start are decoded and dropped.
            first = seek_keyframe(self.container, self.stream, start_pts, self.keyframe)
        last_pts = None
        for vf in self._decoded(first):
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
        self._first = None  # the chain holds it now; do not keep a decoded frame alive
        for index, vf in enumerate(_chain(first, self._iter)):
            if (vf.width, vf.height) != (self.info.width, self.info.height):
                raise InputError(
                    f"{self.path}: frame {index} is {vf.width}x{vf.height}, the stream started at "
                    f"{self.info.width}x{self.info.height}; size changes mid-stream are not supported"
                )
            if vf.is_corrupt:
                self.corrupt_frames += 1
            yield Frame(index, vf.pts, tb, vf.duration or None, convert(vf))


def ticks_at_or_after(seconds: float | Fraction, tb: Fraction) -> int:
    """The first tick of ``tb`` at or after ``seconds``: the frames of a section [start, end) are those
    whose time t satisfies start <= t < end. Floats that mean a tick (0.2 at 1/25) count as that tick."""
    return math.ceil(Fraction(seconds) / tb - Fraction(1, 10**6))


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    del first
    yield from rest


def read_rgb(path: str | Path) -> list[np.ndarray]:
    """Every frame of ``path`` as an (H, W, 3) RGB array, as vsr reads them (for scripts and checks:
    the whole clip is held in memory)."""
    with VideoReader(path) as r:
        return [f.image for f in r]
