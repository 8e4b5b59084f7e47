"""Farm mode: many videos, all cut into segments, on every worker of the session (Ray actors, or this
process), each file joined as soon as its last segment is in; a failed file does not stop the others,
and rerunning the same job resumes. ``vsr farm`` and pipelines/farm.py run it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vsr.config import RunConfig
from vsr.errors import InputError, Interrupted, UsageError, VsrError
from vsr.jobs.file import PARTIAL_SUFFIX
from vsr.jobs.lock import OutputLock
from vsr.jobs.outputs import check_output, default_output, output_codec
from vsr.jobs.session import Session, open_session
from vsr.jobs.split.schedule import SegmentJob, prepare_job, run_jobs
from vsr.media.decode import VideoReader

log = logging.getLogger("vsr")


DEFAULT_SEGMENT_S = 60.0  # seconds per segment of `vsr farm` unless set: a minute of footage per task
EXIT_OK = 0


@dataclass
class FileResult:
    input: Path
    output: Path | None
    status: str  # done | skipped | failed
    frames: int = 0
    seconds: float = 0.0  # wall time until the file was joined (files of a farm run side by side)
    work_seconds: float = 0.0  # worker time of the segments this run made
    new_frames: int = 0  # frames this run made (the rest were reused from an earlier run)
    segments: int = 0
    reused: int = 0
    retries: int = 0
    error: str = ""
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def read_manifest(path: Path) -> list[tuple[Path, Path | None]]:
    """``INPUT`` or ``INPUT<TAB>OUTPUT`` per line; blank lines and ``#`` comments skipped; relative
    paths are taken from the manifest's folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the manifest ({e.strerror})") from e
    pairs = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) > 2 or not fields[0]:
            raise UsageError(f"{path}:{n}: expected INPUT or INPUT<TAB>OUTPUT, got {line!r}")
        src = path.parent / fields[0]
        pairs.append((src, path.parent / fields[1] if len(fields) == 2 and fields[1] else None))
    return pairs


def _plan_file(session: Session, src: Path, dst: Path | None, output_dir: Path | None) -> SegmentJob | FileResult:
    """The job of one input, or the result of a file that is skipped (output exists)."""
    config = session.config
    t = config.timing
    with VideoReader(src, deinterlace=t.deinterlace, decoder=t.decoder, video_stream=t.video_stream) as reader:
        if reader.peek() is None:
            raise InputError(f"{src}: no video frame could be decoded")
        info = reader.info
        if info.is_image:
            raise UsageError(f"{src}: is an image; farm mode upscales videos (use vsr run for images)")
        codec = output_codec(config, info.pix_fmt, dst)
        dst = dst or default_output(src, config, info, output_dir, codec)
        if dst.exists() and not config.output.overwrite:
            return FileResult(src, dst, "skipped")
        check_output(src, dst, config, info, codec)
        lock = OutputLock(dst).acquire()  # held until the file is joined or the farm ends
        try:
            job = prepare_job(session, reader, dst, dst.with_name(dst.name + PARTIAL_SUFFIX), codec)
        except BaseException:
            lock.release()
            raise
        job.lock = lock
        return job


def run_farm(config: RunConfig, pairs: list[tuple[Path, Path | None]], output_dir: Path | None = None) -> list[FileResult]:
    """Upscale every input in segments on the session's Ray actors; a failed file does not stop the others."""
    session = open_session(config)
    results: dict[int, FileResult] = {}
    jobs: dict[int, SegmentJob] = {}
    try:
        for i, (src, dst) in enumerate(pairs):
            try:
                planned = _plan_file(session, src, dst, output_dir)
            except Interrupted:
                raise
            except VsrError as e:
                log.error("%s", e)
                results[i] = FileResult(src, dst, "failed", error=str(e), exit_code=e.exit_code)
                continue
            if isinstance(planned, FileResult):
                log.info("%s: skipped, %s exists", src, planned.output)
                results[i] = planned
            else:
                jobs[i] = planned
        run_jobs(session, list(jobs.values()), "farm", fail_fast=False)
    finally:
        session.close()
        for job in jobs.values():
            if not job.finished:
                job.partial.unlink(missing_ok=True)
            job.work.close()
            if job.lock is not None:
                job.lock.release()
    for i, job in jobs.items():
        code = job.error.exit_code if job.error is not None else EXIT_OK
        results[i] = FileResult(job.src, job.dst, "done" if job.finished else "failed", job.frames_done, job.seconds,
                                job.work_seconds, job.new_frames, len(job.tasks), job.reused, job.retries,
                                str(job.error or ""), code)
    return [results[i] for i in range(len(pairs))]


def summary_table(results: list[FileResult]) -> str:
    """One line per file: status, frames, wall time to its join, worker time and fps of one worker on
    it, segments (reused ones in brackets), retries, and the output or the error."""
    rows = [f"{'status':<8} {'frames':>7} {'wall s':>8} {'work s':>8} {'fps':>7} {'segments':>9} {'retries':>7}  file"]
    for r in results:
        fps = f"{r.new_frames / r.work_seconds:.2f}" if r.work_seconds > 0 else "-"
        segs = f"{r.segments}({r.reused})" if r.segments else "-"
        where = f"{r.input} -> {r.output}" if r.status != "failed" else r.error
        rows.append(f"{r.status:<8} {r.frames:>7} {r.seconds:>8.1f} {r.work_seconds:>8.1f} {fps:>7} {segs:>9} "
                    f"{r.retries:>7}  {where}")
    done = sum(r.status == "done" for r in results)
    failed = sum(r.status == "failed" for r in results)
    rows.append(f"{done} done, {len(results) - done - failed} skipped, {failed} failed")
    return "\n".join(rows)
