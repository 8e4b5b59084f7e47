"""The worker's part of a split run: one segment decoded from the keyframe at or before its start
(frames before the start are decoded and dropped, so open GOPs and B-frames come out right),
upscaled, and encoded alone (video only) with the run's settings, so every segment has the same
encoder headers. A ``SegmentTask`` is a picklable callable, run by this process or by a Ray actor
(``UpscalerActor.run``), which knows nothing of split runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from vsr.errors import InputError
from vsr.executors.local import LocalExecutor
from vsr.jobs.split.plan import Segment
from vsr.media.codecs import EncodeSettings
from vsr.media.decode import VideoReader
from vsr.media.encode import VideoWriter
from vsr.media.frame import VideoInfo

HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a segment file


@dataclass
class SegmentTask:
    """What a worker needs to make one segment file (picklable: it crosses to Ray actors)."""

    src: str
    segment: Segment
    time_base: Fraction
    stream_start: int  # the stream's start pts (VideoReader counts --start from it)
    deinterlace: str  # resolved on the driver (on | double | off), the same for every segment
    decoder: str
    info: VideoInfo  # the driver's view of the input: every segment gets the same headers and tags
    size: tuple[int, int]
    settings: EncodeSettings
    fmt: str  # muxer of the segment files (the output's)
    ext: str
    queue_size: int
    dest: str | None  # write here (a shared work dir); None: return the bytes (Ray object store)

    def __call__(self, upscaler: Any) -> SegmentResult:
        """Make the segment with ``upscaler`` (how a Ray actor runs it)."""
        return encode_segment(upscaler, self)


@dataclass
class SegmentResult:
    index: int
    frames: int
    nbytes: int
    sha256: str
    seconds: float  # wall time of the segment on its worker
    first_pts: int | None = None  # input pts of its first and last frame, checked against the plan
    last_pts: int | None = None
    data: bytes | None = None  # the file's bytes when the task had no dest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class SegmentEncoder:
    """One segment in two steps: ``run`` decodes, upscales and encodes its frames (video only);
    ``finish`` flushes the encoder (x264's lookahead and B-frame delay: tens of frames), moves the
    file into ``task.dest`` (or reads it back as bytes) and hashes it. Between the two the upscaler
    is free, so one worker can start the next segment while this one flushes."""

    def __init__(self, task: SegmentTask) -> None:
        self.task, self.t0 = task, time.monotonic()
        self.tmp_dir = tempfile.mkdtemp(prefix="vsr-seg-") if task.dest is None else None
        self.final = Path(task.dest) if task.dest is not None else Path(self.tmp_dir) / f"segment{task.ext}"
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.writer: VideoWriter | None = None

    def run(self, upscaler: Any, on_frame: Callable[[int], None] | None = None,
            on_tick: Callable[[], None] | None = None) -> None:
        task, seg = self.task, self.task.segment
        # Exact fractions of seconds: VideoReader turns them back into these very pts.
        begin = seg.start_pts if seg.index else task.stream_start  # the first segment reads from the start
        start = (begin - task.stream_start) * task.time_base or None
        duration = None if seg.end_pts is None else (seg.end_pts - begin) * task.time_base
        try:
            with VideoReader(task.src, start=start, duration=duration, deinterlace=task.deinterlace,
                             decoder=task.decoder, video_stream=task.info.stream_index,
                             keyframe=seg.keyframe) as reader:
                if reader.peek() is None:
                    raise InputError(f"{task.src}: segment {seg.index} has no decodable frame")
                self.writer = VideoWriter(self.partial, task.fmt, task.info, task.size, task.settings,
                                          other_streams=False)
                executor = LocalExecutor(upscaler, task.size, queue_size=task.queue_size,
                                         group=upscaler.frames_per_call(task.info.width, task.info.height))
                executor.run(reader, self.writer, on_frame=on_frame, on_tick=on_tick)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> SegmentResult:
        assert self.writer is not None, "run() comes first"
        try:
            report = self.writer.close()
            os.replace(self.partial, self.final)
            index, seconds = self.task.segment.index, time.monotonic() - self.t0
            span = (report.first_pts, report.last_pts)
            if self.task.dest is None:  # read once: the bytes go back through the object store
                data = self.final.read_bytes()
                return SegmentResult(index, report.frames, len(data), hashlib.sha256(data).hexdigest(), seconds,
                                     *span, data)
            return SegmentResult(index, report.frames, self.final.stat().st_size, file_sha256(self.final), seconds,
                                 *span)
        finally:
            self.abort()

    def abort(self) -> None:
        """Release the encoder and remove what is not finished (and the temporary folder)."""
        if self.writer is not None:
            self.writer.abort()
        self.partial.unlink(missing_ok=True)
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def encode_segment(upscaler: Any, task: SegmentTask) -> SegmentResult:
    """Decode, upscale and encode one segment (video only) into ``task.dest`` or into returned bytes."""
    enc = SegmentEncoder(task)
    enc.run(upscaler)
    return enc.finish()


