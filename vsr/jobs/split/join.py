"""Joining a split run: the segments' packets remuxed into the output without re-encoding (decode
timestamps kept strictly increasing), the input's other streams added once."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from vsr.errors import ProcessingError
from vsr.media.containers import codec_family
from vsr.media.encode import (
    add_other_streams,
    finish_output,
    open_output,
    release_output,
    tag_output,
    tag_video,
)
from vsr.media.frame import VideoInfo


@dataclass
class SegmentSpan:
    """What one segment file holds: its packets, and the first and last pts in ``time_base``."""

    packets: int
    first_pts: int | None
    last_pts: int | None
    time_base: Fraction


@dataclass
class JoinStats:
    packets: int = 0
    repaired_dts: int = 0  # packets whose decode timestamp was moved up to keep them increasing
    spans: list[SegmentSpan] = field(default_factory=list)  # per segment, in order


def join_segments(partial: Path, fmt: str, info: VideoInfo, paths: list[Path], audio: bool, subtitles: bool,
                  metadata: dict[str, str]) -> JoinStats:
    """Remux ``paths`` (segment files of one encoder setting) into ``partial`` and add the input's other
    streams; the segments' packets are copied, never re-encoded."""
    out = open_output(partial, fmt, info)
    copier = None
    stats = JoinStats()
    try:
        with av.open(str(paths[0])) as first:
            template = first.streams.video[0]
            vs = out.add_stream_from_template(template)
            tb, extradata = template.time_base, template.codec_context.extradata
            vs.time_base = tb
        tag_video(vs, info, fmt, codec_family(vs.codec_context.name))
        copier = add_other_streams(out, vs, info, audio, subtitles, None)
        tag_output(out, info, metadata)
        last_dts = None
        for path in paths:
            with av.open(str(path)) as seg:
                stream = seg.streams.video[0]
                if stream.time_base != tb or stream.codec_context.extradata != extradata:
                    raise ProcessingError(f"{path}: segment's time base or codec headers differ from the first "
                                          f"segment's; it cannot be joined without re-encoding")
                span = SegmentSpan(0, None, None, tb)
                stats.spans.append(span)
                for packet in seg.demux(stream):
                    if not packet.size:
                        continue
                    span.packets += 1
                    if packet.pts is not None:
                        span.first_pts = packet.pts if span.first_pts is None else min(span.first_pts, packet.pts)
                        span.last_pts = packet.pts if span.last_pts is None else max(span.last_pts, packet.pts)
                    if packet.dts is None:  # Matroska stores no dts: any increasing value up to pts
                        packet.dts = packet.pts if last_dts is None else min(last_dts + 1, packet.pts)
                    if last_dts is not None and packet.dts <= last_dts:
                        packet.dts = last_dts + 1
                        stats.repaired_dts += 1
                        if packet.pts is not None and packet.dts > packet.pts:
                            raise ProcessingError(f"{path}: cannot keep decode timestamps increasing at a segment "
                                                  f"boundary (pts {packet.pts}); try a larger `segment_seconds`")
                    last_dts = packet.dts
                    if copier is not None:
                        copier.pump(float(packet.dts * tb))
                    packet.stream = vs
                    out.mux(packet)
                    stats.packets += 1
        finish_output(out, copier, info, (vs.codec_context.width, vs.codec_context.height))
    except BaseException:
        release_output(out, copier)
        raise
    return stats
