"""The plan of a split run: a video's packets (no decoding) cut at keyframes into segments of about N
seconds, each with its exact frame count and first pts: what the join checks every segment against."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vsr.errors import InputError, UsageError
from vsr.media.probe import choose_video_stream, open_input
from vsr.media.seek import Keyframe

TRUST_FRAMES = 32  # frames decoded to check that a container's pts are presentation times


@dataclass(frozen=True)
class Segment:
    index: int
    start_pts: int  # first pts of the segment (a keyframe's), in the stream's time base
    end_pts: int | None  # first pts of the next segment; None for the last
    frames: int  # frames whose pts lie in [start_pts, end_pts)
    last_pts: int  # the largest pts in [start_pts, end_pts): what the segment's last frame carries
    key_pos: int = -1  # byte position of the keyframe packet that starts it (-1: unknown)

    @property
    def keyframe(self) -> Keyframe:
        return Keyframe(self.start_pts, self.key_pos)


def _pts_are_presentation_times(container: av.container.InputContainer, stream: av.stream.Stream) -> bool:
    """Whether decoded frames come out with increasing pts: not so for H.264 with B-frames in AVI,
    whose packets carry decode order, so no plan made from packets can know the frames' times."""
    last = None
    try:
        for n, frame in enumerate(container.decode(stream)):
            if frame.pts is not None and last is not None and frame.pts <= last:
                return False
            last = frame.pts if frame.pts is not None else last
            if n >= TRUST_FRAMES:
                break
    except av.error.FFmpegError:
        pass  # damage is the decoder's business at run time
    return True


def plan_segments(path: Path, seconds: float, video_stream: int | None = None) -> tuple[list[Segment], Fraction, int]:
    """Cut the video stream at keyframes into segments of about ``seconds`` (each at least that long,
    the last possibly shorter). Returns the segments, the stream's time base and its start pts."""
    if seconds <= 0:
        raise UsageError(f"`segment_seconds` {seconds} must be above zero")
    with open_input(path) as container:
        stream = choose_video_stream(container, video_stream, path)
        index = stream.index
        if not _pts_are_presentation_times(container, stream):
            raise InputError(f"{path}: its {container.format.name} container holds no presentation times for this "
                             f"{stream.codec_context.name} stream (B-frames), so it cannot be cut into segments; "
                             "remux it (ffmpeg -i IN -c copy OUT.mkv) or run without `segment_seconds`")
    with open_input(path) as container:
        stream = container.streams[index]
        tb = stream.time_base or Fraction(1, 1000)
        keys: dict[int, int] = {}
        all_pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.pts is None or not packet.size:
                    continue
                all_pts.append(packet.pts)
                if packet.is_keyframe and packet.pts not in keys:
                    keys[packet.pts] = packet.pos if packet.pos is not None else -1
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: reading packets failed ({e})") from e
        first = stream.start_time or 0  # as VideoReader counts start
    if not all_pts:
        raise InputError(f"{path}: the video stream has no packets")
    step = Fraction(seconds) / tb
    bounds = [min(all_pts)]
    for k in sorted(keys):
        if k - bounds[-1] >= step:
            bounds.append(k)
    all_pts.sort()
    segments = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else None
        lo = bisect.bisect_left(all_pts, start)
        hi = bisect.bisect_left(all_pts, end) if end is not None else len(all_pts)
        segments.append(Segment(i, start, end, hi - lo, all_pts[hi - 1], keys.get(start, -1) if i else -1))
    return segments, tb, first
