"""What flows between the stages: a decoded ``Frame`` with its identity, and the ``VideoInfo`` of its stream.

A ``Frame`` is ``(index, pts, time_base, duration, image)``: the decoder's timestamps travel with the
pixels end to end, so the writer can stamp each output frame with its input pts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vsr.media.color import ColorTags, Hdr10


@dataclass(eq=False)
class Frame:
    index: int  # 0-based position in the processed section
    pts: int  # presentation timestamp in time_base units (as decoded; synthesised if missing)
    time_base: Fraction
    duration: int | None  # in time_base units; None when the decoder does not know
    image: np.ndarray  # (H, W, 3) RGB, uint8 for 8-bit sources, uint16 above


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    codec: str
    time_base: Fraction
    frame_rate: Fraction | None  # average frame rate; None when unknown
    frames: int | None  # expected number of frames in the processed section, when known
    is_image: bool
    start_time: float  # seconds: the video stream's first timestamp
    sample_aspect_ratio: Fraction | None
    frames_listed: int | None = None  # frame count the container's header states (None: it does not)
    is_sequence: bool = False  # frames from a pattern or folder of images (no other streams)
    color: ColorTags = ColorTags()  # matrix, range, primaries, transfer as tagged (frame, else stream)
    hdr: Hdr10 | None = None  # HDR10 mastering display / content light level of the first frame
    rotation: int = 0  # degrees, from the display matrix of the first frame
    field_order: str = "progressive"  # progressive | tt | bb | tb | bt | unknown
    stream_index: int = 0  # the video stream read (an index into the container's streams)
    cover_art: int = 0  # attached pictures beside it (copied to the output as they are)
    metadata: dict = field(default_factory=dict)  # the video stream's own tags (language, title, ...)


FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}  # AVFieldOrder
STREAM_KEYS_DROPPED = frozenset({"duration", "handler_name", "vendor_id", "encoder", "_statistics_tags",
                                 "bps", "number_of_frames", "number_of_bytes", "_statistics_writing_app"})
