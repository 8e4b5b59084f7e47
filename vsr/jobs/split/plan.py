"""The plan of a split run: a video's packets (no decoding) cut at keyframes into segments of about N
seconds, each with its exact frame count and first pts: what the join checks every segment against."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vsr.errors import InputError, UsageError
from vsr.media.probe import open_input


@dataclass(frozen=True)
class Segment:
    index: int
    start_pts: int  # first pts of the segment (a keyframe's), in the stream's time base
    end_pts: int | None  # first pts of the next segment; None for the last
    frames: int  # frames whose pts lie in [start_pts, end_pts)


def plan_segments(path: Path, seconds: float) -> tuple[list[Segment], Fraction, int]:
    """Cut the first video stream at keyframes into segments of about ``seconds`` (each at least that
    long, the last possibly shorter). Returns the segments, the stream's time base and its start pts."""
    if seconds <= 0:
        raise UsageError(f"`segment_seconds` {seconds} must be above zero")
    with open_input(path) as container:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 1000)
        keys, all_pts = set(), []
        try:
            for packet in container.demux(stream):
                if packet.pts is None or not packet.size:
                    continue
                all_pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.add(packet.pts)
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: reading packets failed ({e})") from e
        first = stream.start_time or 0  # as VideoReader counts --start
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
        n = (bisect.bisect_left(all_pts, end) if end is not None else len(all_pts)) - bisect.bisect_left(all_pts, start)
        segments.append(Segment(i, start, end, n))
    return segments, tb, first


