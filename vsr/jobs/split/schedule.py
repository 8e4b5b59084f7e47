"""Split runs scheduled on workers: the segments of one or many videos, made in turn by this process or
at once by the session's Ray actors, recorded as they finish, and each file joined as soon as its last
segment is in. ``vsr run --segment-seconds`` runs one file through here; pipelines/farm.py many.

A segment that fails on an actor (exception, actor death) is given to another actor, up to
``max_retries`` times. A segment that fails because of its input (a VsrError raised in the worker)
fails its file only; the other files of a farm go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from vsr.config import RunConfig
from vsr.errors import Interrupted, ProcessingError, UsageError, VsrError
from vsr.executors.local import POLL_S
from vsr.executors.ray_pool import RayPool, Slot, reason
from vsr.jobs.lock import OutputLock
from vsr.jobs.outputs import encode_settings, output_size
from vsr.jobs.progress import Progress
from vsr.jobs.session import Session
from vsr.jobs.split.join import join_segments
from vsr.jobs.split.plan import plan_segments
from vsr.jobs.split.workdir import WorkDir, fingerprint, work_dir_for
from vsr.jobs.split.worker import SegmentEncoder, SegmentResult, SegmentTask
from vsr.media.containers import container_for
from vsr.media.decode import VideoReader
from vsr.media.streams import provenance
from vsr.upscale.engine import Upscaler
from vsr.version import __version__

log = logging.getLogger("vsr")


@dataclass
class SegmentJob:
    """One video of a split run: its segment tasks, its work directory and what is done."""

    src: Path
    dst: Path
    partial: Path  # the join writes here; renamed to dst when complete
    tasks: list[SegmentTask]
    work: WorkDir
    done: dict[int, dict]  # records of finished segments (from an earlier run, or this one)
    tags: dict[str, str]
    audio: bool
    subtitles: bool
    reused: int = 0  # segments an earlier run had finished
    retries: int = 0
    repaired_dts: int = 0
    via_object_store: int = 0  # segments whose bytes came back through Ray's object store
    segments_per_node: dict[str, int] = field(default_factory=dict)  # Ray runs: where segments were made
    error: VsrError | None = None
    lock: OutputLock | None = None  # the output's, when a farm holds it for the job's lifetime
    finished: bool = False
    t0: float = field(default_factory=time.monotonic)
    seconds: float = 0.0  # wall time from planning to the joined output
    work_seconds: float = 0.0  # segment time summed over the workers (this run's segments)
    new_frames: int = 0  # frames made by this run (not reused)

    @property
    def frames(self) -> int:
        return sum(t.segment.frames for t in self.tasks)

    @property
    def frames_done(self) -> int:
        return sum(int(r["frames"]) for r in self.done.values())

    def pending(self) -> list[SegmentTask]:
        return [t for t in self.tasks if t.segment.index not in self.done]


def prepare_job(session: Session, reader: VideoReader, dst: Path, partial: Path, codec: str) -> SegmentJob:
    """Plan the segments of ``reader``'s video (already peeked) and open (or resume) its work directory."""
    config, info = session.config, reader.info
    if reader.is_section:
        raise UsageError("`segment_seconds` splits whole videos; it cannot be combined with `start`/`duration`")
    if info.is_sequence:
        raise UsageError("`segment_seconds` needs a video file input, not an image sequence")
    if config.encode.encoder != "pyav":
        raise UsageError("--segment-seconds joins segments made by PyAV's encoders; drop --encoder ffmpeg")
    settings = encode_settings(info, config, codec)
    size = output_size(info, config, settings.pix_fmt, session.native_scale)
    segments, tb, first = plan_segments(reader.path, config.execution.segment_seconds, info.stream_index)
    deinterlace = ("double" if config.timing.deinterlace == "double" else "on") if reader.deinterlaced else "off"
    ext = dst.suffix.lower()
    plan = fingerprint(reader.path, config.to_dict(), session.model_name, session.weights_hash, segments)
    work = WorkDir(work_dir_for(dst, config.execution.work_dir), plan, ext, config.execution.resume, config.output.overwrite)
    done = work.finished(len(segments))
    tasks = [SegmentTask(str(reader.path), s, tb, first, deinterlace, config.timing.decoder, info, size, settings,
                         container_for(ext), ext, config.execution.queue_size, None) for s in segments]
    job = SegmentJob(reader.path, dst, partial, tasks, work, done,
                     provenance(__version__, session.model_name, session.weights_hash),
                     config.encode.audio, config.encode.subtitles, reused=len(done))
    log.info("%s: %d segment(s) of about %g s at keyframes%s; work directory %s", reader.path, len(segments),
             config.execution.segment_seconds, f", {len(done)} already done" if done else "", work.path)
    return job


def run_jobs(session: Session, jobs: list[SegmentJob], label: str, fail_fast: bool = True) -> None:
    """Make every pending segment of ``jobs`` and join each file when its segments are complete.
    With ``fail_fast`` the first failed file stops the run; otherwise it is marked (job.error) and
    the others go on."""
    config = session.config
    live = [j for j in jobs if j.error is None]
    progress = Progress("none" if config.output.quiet else config.output.progress, sum(j.frames for j in live), label,
                        segments=sum(len(j.tasks) for j in live), initial=sum(j.frames_done for j in live),
                        initial_segments=sum(len(j.done) for j in live))
    try:
        for job in live:
            if not job.pending():  # every segment was done by an earlier run: join only
                try:
                    _join(job)
                except VsrError as e:
                    _failed(job, e, fail_fast)
        if session.pool is not None:
            _RaySegments(session.pool, config, progress, fail_fast).run(live)
        else:
            _run_local(session.upscaler, live, progress, fail_fast)
    finally:
        progress.close()
        for job in jobs:
            job.work.close()  # finished ones removed theirs; the others keep their segments, unlocked


def _failed(job: SegmentJob, error: VsrError, fail_fast: bool) -> None:
    if fail_fast or isinstance(error, Interrupted):
        raise error
    job.error = error.about(job.src)  # every message names its file
    log.error("%s", error)


def _check(job: SegmentJob, index: int, frames: int, first: int | None, last: int | None,
           time_base: Fraction | None = None) -> None:
    """A segment must hold exactly the frames its plan counted from the packets, first and last pts
    included (``time_base``: of ``first`` and ``last`` when it is not the input's); ProcessingError if not."""
    task = job.tasks[index]
    seg, deint = task.segment, task.deinterlace
    want = seg.frames * (2 if deint == "double" else 1)
    if frames != want:
        raise ProcessingError(f"{job.src}: segment {index} holds {frames} frames, its plan {want} (pts "
                              f"{seg.start_pts}-{seg.last_pts}); the input's frames could not all be decoded there")
    if deint != "off" or first is None or last is None:
        return  # deinterlaced frames carry the filter's timestamps
    tb_in = task.time_base
    scale = (lambda p: round(p * tb_in / time_base)) if time_base is not None and time_base != tb_in else (lambda p: p)
    if (first, last) != (scale(seg.start_pts), scale(seg.last_pts)):
        raise ProcessingError(f"{job.src}: segment {index} spans pts {first}-{last}, its plan "
                              f"{scale(seg.start_pts)}-{scale(seg.last_pts)}")


def _store(job: SegmentJob, result: SegmentResult) -> None:
    """Keep a finished segment: bytes from the object store are written here, a file a worker wrote
    to the shared work directory is checked; then its record makes it count as done."""
    _check(job, result.index, result.frames, result.first_pts, result.last_pts)
    path = job.work.segment_path(result.index)
    if result.data is not None:
        if hashlib.sha256(result.data).hexdigest() != result.sha256:
            raise ProcessingError(f"{job.src}: segment {result.index} arrived damaged (checksum mismatch)")
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(result.data)
        os.replace(tmp, path)
        result.data = None
    elif not path.is_file() or path.stat().st_size != result.nbytes:
        raise ProcessingError(f"{path}: the worker's segment file is not there; `work_dir` must be a folder "
                              f"every node of the cluster sees at the same path")
    job.work.record(result)
    job.done[result.index] = {"frames": result.frames, "sha256": result.sha256}


def _segment_done(job: SegmentJob, result: SegmentResult, progress: Progress, done_frames: int) -> None:
    _store(job, result)
    job.work_seconds += result.seconds
    job.new_frames += result.frames
    progress.segment_done(done_frames)
    if not job.pending():
        _join(job)


def _join(job: SegmentJob) -> None:
    """Join the segments into the partial file, move it into place, drop the work directory."""
    paths = [job.work.segment_path(t.segment.index) for t in job.tasks]
    task = job.tasks[0]
    stats = join_segments(job.partial, task.fmt, task.info, paths, job.audio, job.subtitles, job.tags)
    for t, span in zip(job.tasks, stats.spans, strict=True):
        _check(job, t.segment.index, span.packets, span.first_pts, span.last_pts, span.time_base)
    os.replace(job.partial, job.dst)
    job.work.remove()
    job.repaired_dts, job.finished = stats.repaired_dts, True
    job.seconds = time.monotonic() - job.t0


def _run_local(upscaler: Upscaler, jobs: list[SegmentJob], progress: Progress, fail_fast: bool) -> None:
    """Segments in turn on this process's upscaler. A segment's encoder flush, rename and checksum run
    on a helper thread while the next segment is decoded and upscaled (the flush is tens of frames of
    x264 work that would otherwise leave the model idle at every segment boundary)."""
    finishing: tuple[SegmentJob, Future] | None = None

    def collect() -> None:
        nonlocal finishing
        if finishing is None:
            return
        job, future = finishing
        finishing = None
        try:
            result = future.result()
            _segment_done(job, result, progress, progress.done)
        except VsrError as e:
            _failed(job, e, fail_fast)

    with ThreadPoolExecutor(1, thread_name_prefix="vsr-finish") as pool:
        try:
            for job in jobs:
                for task in job.pending():
                    if job.error is not None:
                        break
                    base = progress.done
                    task.dest = str(job.work.segment_path(task.segment.index))
                    enc = SegmentEncoder(task)
                    try:
                        enc.run(upscaler, on_frame=lambda n: progress.update(base + n), on_tick=progress.tick)
                    except VsrError as e:
                        collect()
                        _failed(job, e, fail_fast)
                        break
                    collect()  # the previous segment, finished while this one ran
                    finishing = (job, pool.submit(enc.finish))
        finally:
            collect()  # also on an interruption: a segment that made it to disk is recorded


@dataclass
class _Running:
    job: SegmentJob
    task: SegmentTask
    slot: Slot
    attempts: int


class _RaySegments:
    """One segment at a time per actor; failed segments go to another actor; files join as they complete."""

    def __init__(self, pool: RayPool, config: RunConfig, progress: Progress, fail_fast: bool) -> None:
        self.pool, self.progress, self.fail_fast = pool, progress, fail_fast
        self.max_retries, self.shared = config.execution.max_retries, config.execution.work_dir is not None
        self.running: dict[Any, _Running] = {}
        self.queue: deque[tuple[SegmentJob, SegmentTask, int]] = deque()

    def run(self, jobs: list[SegmentJob]) -> None:
        ray = self.pool.ray
        self.pool.reset()
        self.queue.extend((job, task, 0) for job in jobs for task in job.pending())
        # Interrupted or failed: what the actors are still doing ends when the session kills them.
        while self.queue or self.running:
            self._submit()
            refs = [*self.running, *self.pool.probes]
            ready = ray.wait(refs, num_returns=1, timeout=POLL_S)[0] if refs else []
            self.progress.tick()
            for ref in ready:
                if ref in self.pool.probes:
                    self.pool.probed(ref, self.progress.label)
                else:
                    self._collect(ref)

    def _submit(self) -> None:
        for slot in self.pool.alive():
            while self.queue and self.queue[0][0].error is not None:
                self.queue.popleft()  # the file failed: its other segments are not made
            if not self.queue:
                return
            if slot.ready and slot.inflight == 0:
                job, task, attempts = self.queue.popleft()
                task.dest = str(job.work.segment_path(task.segment.index)) if self.shared else None
                slot.inflight = 1
                self.running[slot.handle.run.remote(task)] = _Running(job, task, slot, attempts + 1)
        if self.queue and not self.pool.alive():
            raise ProcessingError(f"all {len(self.pool.slots)} Ray actors failed")

    def _collect(self, ref: Any) -> None:
        ray = self.pool.ray
        run = self.running.pop(ref)
        run.slot.inflight = 0
        try:
            result, node_id = ray.get(ref)
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, VsrError):  # the input's fault, not the actor's: no retry
                run.slot.failures = 0
                _failed(run.job, cause, self.fail_fast)
                return
            self.pool.slot_failed(run.slot, e, self.progress.label)
            if run.attempts > self.max_retries:
                _failed(run.job, ProcessingError(
                    f"{run.job.src}: segment {run.task.segment.index} failed {run.attempts} times on Ray actors "
                    f"(max_retries {self.max_retries}); last error: {reason(e)}"), self.fail_fast)
                return
            run.job.retries += 1
            self.queue.appendleft((run.job, run.task, run.attempts))
            return
        run.slot.failures = 0
        run.job.via_object_store += result.data is not None
        node = self.pool.node_name(node_id)
        run.job.segments_per_node[node] = run.job.segments_per_node.get(node, 0) + 1
        try:
            _segment_done(run.job, result, self.progress, self.progress.done + result.frames)
        except VsrError as e:
            _failed(run.job, e, self.fail_fast)
