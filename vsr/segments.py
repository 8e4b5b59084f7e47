"""Split runs: a video cut at keyframes into segments, each upscaled and encoded on its own, then joined.

``plan_segments`` reads the video's packets (no decoding) and cuts at keyframes about every N seconds;
each segment knows its exact frame count. ``encode_segment`` is the worker's part: it decodes from the
keyframe at or before the segment's start (frames before the start are decoded and dropped, so open
GOPs and B-frames come out right), upscales, and encodes the video alone with the run's settings, so
every segment has the same encoder headers. ``WorkDir`` keeps finished segments with a record each
(frames, size, sha256) and a plan that guards ``--resume`` against a changed input or settings.
``join_segments`` remuxes the segments' packets into the output without re-encoding (decode
timestamps kept strictly increasing) and adds the input's other streams once.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av

from vsr import __version__
from vsr.errors import InputError, ProcessingError, UsageError
from vsr.video.encoders import EncodeSettings
from vsr.video.probe import open_input
from vsr.video.reader import VideoInfo, VideoReader
from vsr.video.writer import (VideoWriter, add_other_streams, codec_family, finish_output, open_output,
                              release_output, tag_video)

log = logging.getLogger("vsr")

WORK_SUFFIX = ".vsr-work"  # the work directory of output X is .X.vsr-work beside it (or under --work-dir)
PLAN_FILE = "plan.json"  # input fingerprint, settings and segment bounds of the run the folder belongs to
HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a segment file
# Settings that do not change a segment's bytes: a resumed run may differ in these.
NOT_IN_FINGERPRINT = frozenset({
    "progress", "quiet", "overwrite", "skip_existing", "executor", "workers", "ray_address",
    "inflight_per_worker", "max_retries", "queue_size", "threads", "resume", "work_dir", "audio",
    "subtitles", "device", "compile", "cuda_graphs", "max_pixels",
})


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
        raise UsageError(f"--segment-seconds {seconds} must be above zero")
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


@dataclass
class SegmentResult:
    index: int
    frames: int
    nbytes: int
    sha256: str
    seconds: float  # wall time of the segment on its worker
    data: bytes | None = None  # the file's bytes when the task had no dest
    node: str = ""  # Ray node id of the worker ("" when local)


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
        self.frames = 0

    def run(self, upscaler: Any, on_frame: Callable[[int], None] | None = None,
            on_tick: Callable[[], None] | None = None) -> None:
        from vsr.runtime.local import LocalExecutor

        task, seg = self.task, self.task.segment
        # Exact fractions of seconds: VideoReader turns them back into these very pts.
        begin = seg.start_pts if seg.index else task.stream_start  # the first segment reads from the start
        start = (begin - task.stream_start) * task.time_base or None
        duration = None if seg.end_pts is None else (seg.end_pts - begin) * task.time_base
        try:
            with VideoReader(task.src, start=start, duration=duration, deinterlace=task.deinterlace,
                             decoder=task.decoder) as reader:
                if reader.peek() is None:
                    raise InputError(f"{task.src}: segment {seg.index} has no decodable frame")
                self.writer = VideoWriter(self.partial, task.fmt, task.info, task.size, task.settings,
                                          other_streams=False)
                executor = LocalExecutor(upscaler, task.size, queue_size=task.queue_size,
                                         group=upscaler.frames_per_call(task.info.width, task.info.height))
                self.frames = executor.run(reader, self.writer, on_frame=on_frame, on_tick=on_tick).frames_written
        except BaseException:
            self.abort()
            raise

    def finish(self) -> SegmentResult:
        assert self.writer is not None, "run() comes first"
        try:
            self.writer.close()
            os.replace(self.partial, self.final)
            index, seconds = self.task.segment.index, time.monotonic() - self.t0
            if self.task.dest is None:  # read once: the bytes go back through the object store
                data = self.final.read_bytes()
                return SegmentResult(index, self.frames, len(data), hashlib.sha256(data).hexdigest(), seconds, data)
            return SegmentResult(index, self.frames, self.final.stat().st_size, file_sha256(self.final), seconds)
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


def work_dir_for(dst: Path, shared: str | Path | None) -> Path:
    """``.<output name>.vsr-work`` beside the output, or under ``shared`` (named with a hash of the
    output's absolute path, so the outputs of a farm never share one)."""
    if shared is None:
        return dst.parent / f".{dst.name}{WORK_SUFFIX}"
    digest = hashlib.sha256(str(dst.resolve()).encode()).hexdigest()[:10]
    return Path(shared) / f"{dst.name}-{digest}{WORK_SUFFIX}"


def fingerprint(src: Path, config: dict, model: str, weights_hash: str | None, segments: list[Segment]) -> dict:
    """What a resumed run must share with the run that made the folder for its segments to be reused."""
    st = src.stat()
    return {
        "vsr": __version__,
        "input": str(src.resolve()),
        "input_bytes": st.st_size,
        "input_mtime_ns": st.st_mtime_ns,
        "model": model,
        "weights": weights_hash,
        "settings": {k: v for k, v in sorted(config.items()) if k not in NOT_IN_FINGERPRINT},
        "segments": [[s.start_pts, s.end_pts, s.frames] for s in segments],
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a kill leaves the old record or the new one, never half of one


class WorkDir:
    """The segments of one output: ``seg_NNNNN<ext>`` files and their ``.json`` records, plus the plan."""

    def __init__(self, path: Path, plan: dict, ext: str, resume: bool, overwrite: bool) -> None:
        self.path, self.ext = path, ext
        plan_file = path / PLAN_FILE
        plan = json.loads(json.dumps(plan, default=str))  # as it reads back from plan.json
        if path.exists():
            old = None
            try:
                old = json.loads(plan_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
            if not resume and not overwrite:
                raise UsageError(f"{path}: holds the segments of an unfinished run; pass --resume to continue it "
                                 f"or --overwrite to start over")
            if resume and old is not None and old != plan:
                changed = sorted(k for k in plan if old.get(k) != plan[k])
                if not overwrite:
                    raise UsageError(f"{path}: was made for a different input or settings ({', '.join(changed)} "
                                     f"changed); pass --overwrite to start over")
                resume = False
            if not resume or old is None:
                shutil.rmtree(path, ignore_errors=True)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{path}: cannot create the work directory ({e.strerror})") from e
        if not plan_file.exists():
            _write_json(plan_file, plan)
        for stale in path.glob("*.partial"):  # a segment a killed worker was writing
            stale.unlink(missing_ok=True)

    def segment_path(self, index: int) -> Path:
        return self.path / f"seg_{index:05d}{self.ext}"

    def record(self, result: SegmentResult) -> None:
        data = {k: v for k, v in asdict(result).items() if k != "data"}
        _write_json(self.segment_path(result.index).with_suffix(".json"), data)

    def finished(self, count: int) -> dict[int, dict]:
        """Records of segments whose file is there and matches its checksum; others are removed."""
        done = {}
        for i in range(count):
            rec_path = self.segment_path(i).with_suffix(".json")
            if not rec_path.exists():
                continue
            seg = self.segment_path(i)
            try:
                rec = json.loads(rec_path.read_text(encoding="utf-8"))
                ok = seg.stat().st_size == rec["nbytes"] and file_sha256(seg) == rec["sha256"]
            except (OSError, ValueError, KeyError):
                ok = False
            if ok:
                done[i] = rec
            else:
                log.warning("%s: segment %d fails its checksum or is missing; it will be redone", self.path, i)
                rec_path.unlink(missing_ok=True)
                seg.unlink(missing_ok=True)
        return done

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class JoinStats:
    packets: int = 0
    repaired_dts: int = 0  # packets whose decode timestamp was moved up to keep them increasing


def join_segments(partial: Path, fmt: str, info: VideoInfo, paths: list[Path], audio: bool, subtitles: bool,
                  metadata: dict[str, str]) -> JoinStats:
    """Remux ``paths`` (segment files of one encoder setting) into ``partial`` and add the input's other
    streams; the segments' packets are copied, never re-encoded."""
    out = open_output(partial, fmt)
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
        out.metadata.update(metadata)
        last_dts = None
        for path in paths:
            with av.open(str(path)) as seg:
                stream = seg.streams.video[0]
                if stream.time_base != tb or stream.codec_context.extradata != extradata:
                    raise ProcessingError(f"{path}: segment's time base or codec headers differ from the first "
                                          f"segment's; it cannot be joined without re-encoding")
                for packet in seg.demux(stream):
                    if not packet.size:
                        continue
                    if packet.dts is None:  # Matroska stores no dts: any increasing value up to pts
                        packet.dts = packet.pts if last_dts is None else min(last_dts + 1, packet.pts)
                    if last_dts is not None and packet.dts <= last_dts:
                        packet.dts = last_dts + 1
                        stats.repaired_dts += 1
                        if packet.pts is not None and packet.dts > packet.pts:
                            raise ProcessingError(f"{path}: cannot keep decode timestamps increasing at a segment "
                                                  f"boundary (pts {packet.pts}); try a larger --segment-seconds")
                    last_dts = packet.dts
                    if copier is not None:
                        copier.pump(float(packet.dts * tb))
                    packet.stream = vs
                    out.mux(packet)
                    stats.packets += 1
        finish_output(out, copier)
    except BaseException:
        release_output(out, copier)
        raise
    return stats
