"""One input, one output: ``upscale_file`` wires reader → executor → writer for a video, an image or a
split run, with an atomic output.

Output goes to ``<output>.partial`` and is renamed on success; on any failure or interruption the
partial file is removed, so nothing that looks finished is ever left behind. Every error names the
file it is about.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vsr.config import RunConfig
from vsr.errors import InputError, Interrupted, ProcessingError, UsageError, VsrError
from vsr.executors.local import LocalExecutor
from vsr.executors.ray_frames import RayExecutor
from vsr.jobs.lock import OutputLock
from vsr.jobs.outputs import (
    check_output,
    default_output,
    encode_settings,
    output_codec,
    output_size,
)
from vsr.jobs.progress import Estimate, Progress
from vsr.jobs.session import Session
from vsr.jobs.split.schedule import prepare_job, run_jobs
from vsr.media.containers import container_for
from vsr.media.decode import VideoReader
from vsr.media.encode import FrameWriter, VideoWriter
from vsr.media.ffmpeg.writer import FFmpegWriter
from vsr.media.images import SequenceWriter, write_image
from vsr.media.probe import describe
from vsr.media.sequence import is_pattern
from vsr.media.streams import provenance
from vsr.version import __version__

log = logging.getLogger("vsr")

PARTIAL_SUFFIX = ".partial"


@dataclass
class RunSummary:
    """What ``upscale_file`` did: frames written, wall seconds, output size, and how."""

    input: Path
    output: Path
    model: str
    frames: int
    seconds: float
    size: tuple[int, int]  # output (width, height)
    copied_packets: int = 0  # packets of audio, subtitle and data streams copied
    damaged_packets: int = 0  # input packets the decoder rejected (concealed)
    repaired_pts: int = 0  # frames whose timestamps did not increase, moved (damaged input)
    splices: int = 0  # places where timestamps went back and the rest was shifted (all streams)
    stats: dict = field(default_factory=dict)
    note: str = ""  # one line on how the work was spread (Ray: actors, retries, frames per actor/node)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def upscale_file(session: Session, src: str | Path, dst: str | Path | None = None,
                 output_dir: str | Path | None = None) -> RunSummary:
    """Upscale one video, image or image sequence ``src`` into ``dst`` (None: the default name, in
    ``output_dir`` or beside the input); returns what was done. Raises VsrError subclasses."""
    src = Path(src)
    dst = Path(dst) if dst is not None else None
    output_dir = Path(output_dir) if output_dir is not None else None
    config = session.config
    t0 = time.monotonic()
    t = config.timing
    reader = VideoReader(src, start=t.start, duration=t.duration, deinterlace=t.deinterlace, fps=t.fps,
                         decoder=t.decoder, video_stream=t.video_stream)
    try:
        if reader.peek() is None:
            raise InputError(f"{src}: no video frame could be decoded"
                             + (" in the requested section" if reader.is_section else ""))
        info = reader.info
        others = [describe(v) for v in reader.container.streams.video if v.index != info.stream_index]
        if others:
            log.info("%s: upscaling video stream %s; also in the file: %s (`video_stream` picks another)", src,
                     describe(reader.stream), ", ".join(others))
        codec = None if info.is_image else output_codec(config, info.pix_fmt, dst)  # resolved once per file
        dst = dst or default_output(src, config, info, output_dir, codec)
        check_output(src, dst, config, info, codec)
        # A frame-pattern output is made atomic by its SequenceWriter; files by a .partial rename.
        partial = dst.with_name(dst.name + PARTIAL_SUFFIX) if not is_pattern(dst) else None
        lock = OutputLock(dst).acquire()  # one writer per output, until it is in place
        try:
            if info.is_image:
                summary = _image(session, reader, partial, dst)
            elif config.execution.segment_seconds:
                summary = _segmented(session, reader, partial, dst, codec)  # moves partial into place
                partial = None
            else:
                summary = _video(session, reader, partial, dst, codec)
            if partial is not None:
                os.replace(partial, dst)
        except BaseException as e:
            if partial is not None:
                partial.unlink(missing_ok=True)
            if isinstance(e, Interrupted) and e.path is None:  # a split run names its kept segments itself
                e.also("nothing was written")
            if isinstance(e, VsrError):
                raise e.about(src)  # every message names the file it is about
            if isinstance(e, Exception):
                # A failure inside the model, a codec or the OS: one line naming the file, exit 1.
                raise ProcessingError(f"{src}: {e.__class__.__name__}: {e}") from e
            raise
        finally:
            lock.release()
    finally:
        reader.close()
    summary.seconds = time.monotonic() - t0
    summary.damaged_packets = reader.damaged_packets
    listed = reader.info.frames_listed
    whole = not (reader.is_section or reader.deinterlaced)
    if whole and listed and summary.frames < listed:
        log.warning("%s: only %d of the %d frames its container lists could be read (truncated or damaged "
                    "file); all of those were written", src, summary.frames, listed)
    if reader.damaged_packets or reader.corrupt_frames:
        log.warning("%s: damaged input: %d packet(s) the decoder rejected (no frame came out of them; the frame "
                    "before stays on screen until the next), %d frame(s) decoded with errors (written as decoded)",
                    src, reader.damaged_packets, reader.corrupt_frames)
    return summary


def _image(session: Session, reader: VideoReader, partial: Path, dst: Path) -> RunSummary:
    frame = next(iter(reader), None)
    if frame is None:
        raise InputError(f"{reader.path}: no image could be decoded")
    size = output_size(reader.info, session.config, None, session.native_scale)
    if session.pool is not None:
        image = session.pool.upscale_image(frame.image, size)
    else:
        image = session.upscaler.upscale([frame.image], size)[0]
    write_image(partial, image, dst.suffix)
    return RunSummary(reader.path, dst, session.model_name, 1, 0.0, size)


def _video(session: Session, reader: VideoReader, partial: Path | None, dst: Path, codec: str) -> RunSummary:
    config, info = session.config, reader.info
    settings = encode_settings(info, config, codec)
    # A frame-pattern output is RGB images: no chroma subsampling, so no even rounding.
    size = output_size(info, config, settings.pix_fmt if partial is not None else None, session.native_scale)
    section = reader.section_pts if reader.is_section else None
    tags = provenance(__version__, session.model_name, session.weights_hash)
    writer: FrameWriter
    if partial is None:
        writer = SequenceWriter(dst, config.output.overwrite)
    else:
        writer_class = FFmpegWriter if config.encode.encoder == "ffmpeg" else VideoWriter
        writer = writer_class(partial, container_for(dst.suffix), info, size, settings, config.encode.audio,
                              config.encode.subtitles, section, tags)
    progress = Progress("none" if config.output.quiet else config.output.progress, info.frames, reader.path.name)
    on_cpu = session.upscaler.device.type == "cpu" if session.upscaler is not None else session.pool.on_cpu
    estimate = Estimate(info.frames, reader.path.name, on_cpu, faster_choice(config))

    def on_frame(done: int) -> None:
        progress.update(done)
        estimate(done)

    executor: LocalExecutor
    if session.pool is not None:
        group = session.pool.frames_per_call(info.width, info.height)
        executor = RayExecutor(session.pool, size, config.execution.queue_size, group, reader.path.name, info.frames)
    else:
        group = session.upscaler.frames_per_call(info.width, info.height)
        executor = LocalExecutor(session.upscaler, size, queue_size=config.execution.queue_size, group=group)
    try:
        stats = executor.run(reader, writer, on_frame=on_frame, on_tick=progress.tick)
        report = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        progress.close()
    if stats.frames_written != stats.frames_read:
        raise ProcessingError(f"{reader.path}: read {stats.frames_read} frames but wrote {stats.frames_written}")
    if report.repaired_pts:
        log.warning("%s: %d frame(s) had timestamps that did not increase (damaged input); each was moved "
                    "one tick after the frame before", reader.path, report.repaired_pts)
    if report.splices:
        log.warning("%s: timestamps went back %d time(s) (a splice, or a reset clock); every stream continues "
                    "from where it stood there, so no time is lost and audio stays in sync", reader.path,
                    report.splices)
    return RunSummary(reader.path, dst, session.model_name, stats.frames_written, 0.0, size, report.copied_packets,
                      repaired_pts=report.repaired_pts, splices=report.splices,
                      stats={**vars(stats), "frame_bound": executor.frame_bound(), "estimated_seconds": estimate.seconds,
                             "estimate_spent_s": estimate.spent},
                      note=stats.note())


def faster_choice(config: RunConfig) -> str:
    """What would make a slow run faster, for the line that predicts it."""
    scale = config.model.scale
    if scale is not None and scale > 2:
        return "`scale` 2 or a GPU is faster"
    return "a smaller model (`model` bicubic) or a GPU is faster"


def _segmented(session: Session, reader: VideoReader, partial: Path | None, dst: Path, codec: str) -> RunSummary:
    if partial is None:
        raise UsageError("`segment_seconds` writes a video file, not a frame pattern")
    job = prepare_job(session, reader, dst, partial, codec)
    reader.close()  # the segments are read by the workers
    kept = lambda: (f"{len(job.done)} of {len(job.tasks)} segment(s) are kept in {job.work.path}: "  # noqa: E731
                    "rerun with `resume` to finish")
    try:
        run_jobs(session, [job], reader.path.name)
    except Interrupted as e:
        raise Interrupted(f"{e}; {kept()}", e.signum).about(reader.path) from e
    except VsrError as e:
        if not isinstance(e, ProcessingError) or not job.done:
            raise
        raise e.about(reader.path).also(kept())  # a dead Ray node or worker: the work done so far survives
    except Exception as e:  # the Ray connection itself lost (its node died), or another runtime failure
        raise ProcessingError(f"{reader.path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                              f"{kept()}") from e
    task = job.tasks[0]
    where = f"; segments per node {job.segments_per_node}" if job.segments_per_node else ""
    note = (f"{len(job.tasks)} segment(s), {job.reused} reused from an earlier run, {job.retries} "
            f"retr{'y' if job.retries == 1 else 'ies'}{where}")
    return RunSummary(reader.path, dst, session.model_name, job.frames_done, 0.0, task.size,
                      stats={"segments": len(job.tasks), "reused_segments": job.reused, "retries": job.retries,
                             "via_object_store": job.via_object_store, "repaired_dts": job.repaired_dts},
                      note=note)
