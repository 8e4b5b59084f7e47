"""Seeking to where a section (or a split run's segment) starts decoding: a keyframe at or before its
first frame, in every container.

Containers with an index (MP4, MOV, Matroska, WebM, AVI) land on the keyframe at or before the
target when asked for it. MPEG-TS and M2TS have no index: FFmpeg searches by timestamp and lands on
a packet at or *after* the target, often past the keyframe, and decoding from there loses the frames
up to the next keyframe. So the landing is checked: the first keyframe demuxed after a seek must be
at or before the target, or the seek is repeated further back (1 s, then 2 s, 4 s, ...), down to the
stream's start. A split run knows each segment's keyframe from its plan, with its byte position, and
seeks there by bytes first, which lands exactly in a transport stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av

SEEK_STEP_S = 1.0  # seconds the first retry steps back; each further retry doubles it


@dataclass(frozen=True)
class Keyframe:
    """A keyframe packet as a plan saw it: its pts and byte position (-1: unknown)."""

    pts: int
    pos: int = -1


def _first_keyframe(container: av.container.InputContainer, stream: av.stream.Stream) -> av.Packet | None:
    """Demux ``stream`` from where the container stands to its first keyframe packet."""
    for packet in container.demux(stream):
        if packet.size and packet.is_keyframe and packet.pts is not None:
            return packet
    return None


def seek_keyframe(container: av.container.InputContainer, stream: av.stream.Stream, target: int,
                  known: Keyframe | None = None) -> av.Packet | None:
    """Position ``container`` so that decoding ``stream`` from the returned keyframe packet (then the
    packets demuxed after it) produces every frame from pts ``target`` on; None when the stream is
    to be read from its start instead (the container is rewound there)."""
    if known is not None and known.pos >= 0:
        try:
            container.seek(known.pos, unsupported_byte_offset=True)
            packet = _first_keyframe(container, stream)
            if packet is not None and packet.pts == known.pts:
                return packet
        except av.error.FFmpegError:
            pass  # byte seeking not supported here: by timestamp
    tb = stream.time_base or Fraction(1, 1000)
    floor = stream.start_time or 0
    step = max(1, round(SEEK_STEP_S / tb))
    where = target
    while where > floor:
        try:
            container.seek(where, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            break
        packet = _first_keyframe(container, stream)
        if packet is not None and packet.pts <= target:
            return packet
        where, step = max(floor, where - step), step * 2
    container.seek(floor, stream=stream, backward=True, any_frame=False)
    return None
