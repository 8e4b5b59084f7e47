"""``--decoder decord``: decord decodes the pixels (8-bit sources), PyAV supplies the timestamps.

decord reads frames by index with its own FFmpeg build; the container's presentation timestamps come
from PyAV's demuxer (packets only, nothing decoded twice), so timing stays the container's. decord
converts to RGB with FFmpeg's default matrix (BT.601, limited range), like PyAV's ``to_ndarray``;
the PyAV path converts with the source's own tagged matrix instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av

from vsr.errors import InputError, UsageError
from vsr.media.frame import Frame, VideoInfo

BATCH_FRAMES = 16  # frames decord returns per call (bounded memory, fewer Python round trips)


def container_pts(path: Path, index: int) -> list[int]:
    """Presentation timestamps of video stream ``index``, in order, from packets alone."""
    with av.open(str(path)) as c:
        stream = c.streams[index]
        return sorted(p.pts for p in c.demux(stream) if p.size and p.pts is not None)


def decord_frames(info: VideoInfo, section_pts: tuple[int, int | None], section: bool) -> Iterator[Frame]:
    """Frames of ``info.path`` decoded by decord, stamped with the container's pts."""
    if info.bit_depth > 8:
        raise UsageError(f"{info.path}: `decoder` decord reads 8-bit video only ({info.pix_fmt} is "
                         f"{info.bit_depth}-bit); use the default `decoder` pyav")
    try:
        import decord
    except ImportError as e:
        raise UsageError("`decoder` decord needs the decord package: pip install decord") from e
    try:
        vr = decord.VideoReader(str(info.path), ctx=decord.cpu(0))
    except (RuntimeError, decord.DECORDError) as e:
        raise InputError(f"{info.path}: decord cannot read it ({e})") from e
    pts = container_pts(info.path, info.stream_index)
    if len(pts) != len(vr):
        raise InputError(f"{info.path}: decord sees {len(vr)} frames, the container {len(pts)}; "
                         "use the default `decoder` pyav")
    start, end = section_pts
    wanted = [i for i, p in enumerate(pts) if (not section or p >= start) and (end is None or p < end)]
    durations = [b - a for a, b in zip(pts, pts[1:])] + [None]
    index = 0
    for k in range(0, len(wanted), BATCH_FRAMES):
        chunk = wanted[k : k + BATCH_FRAMES]
        try:
            images = vr.get_batch(chunk).asnumpy()
        except decord.DECORDError as e:  # e.g. frames narrower than 64 px trip decord's copy
            raise InputError(f"{info.path}: decord failed on frames {chunk[0]}-{chunk[-1]} ({str(e)[-120:]}); "
                             "use the default `decoder` pyav") from e
        for i, image in zip(chunk, images):
            yield Frame(index, pts[i], info.time_base, durations[i], image)
            index += 1
