"""upscale_file(): wires reader → executor → writer for one input, with an atomic output.

Output goes to ``<output>.partial`` and is renamed on success; on any failure or interruption the
partial file is removed, so nothing that looks finished is ever left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vsr import __version__, engine
from vsr.config import RunConfig
from vsr.errors import InputError, Interrupted, ProcessingError, UsageError, VsrError
from vsr.models import MODELS, default_model, load_model
from vsr.outputs import check_output, default_output, encode_settings, output_codec, output_size
from vsr.progress import Progress
from vsr.runtime.local import LocalExecutor
from vsr.video.reader import VideoReader
from vsr.video.sequence import is_pattern
from vsr.video.streams import provenance
from vsr.video.writer import SequenceWriter, VideoWriter, container_for, write_image

if TYPE_CHECKING:
    from vsr.runtime.ray_pool import RayPool
    from vsr.video.ffmpeg_writer import FFmpegWriter

log = logging.getLogger("vsr")

EXECUTORS = ("auto", "local", "ray")
ENCODERS = ("pyav", "ffmpeg")  # --encoder: who runs the video encoder
SCALES = (1, 2, 3, 4)  # accepted --scale values
PARTIAL_SUFFIX = ".partial"
BUSY_CORES = 0.5  # cores kept busy by other processes from which the model leaves one core free
BUSY_SAMPLE_S = 0.1  # seconds over which busy cores are measured when a session opens


@dataclass
class RunSummary:
    input: Path
    output: Path
    model: str
    frames: int
    seconds: float
    size: tuple[int, int]  # output (width, height)
    copied_packets: int = 0
    damaged_packets: int = 0
    stats: dict = field(default_factory=dict)
    note: str = ""  # one line on how the work was spread (Ray: actors, retries, frames per actor/node)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Session:
    """What stays loaded across the files of one ``vsr run``: the model on its device."""

    config: RunConfig
    model_name: str
    upscaler: engine.Upscaler | None  # None when Ray actors hold the model
    weights_hash: str | None = None  # short sha256 of the model's tensors (provenance)
    pool: RayPool | None = None  # the Ray actors, with --executor ray

    def close(self) -> None:
        """Release the Ray actors (and Ray itself when this session started it)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def weights_digest(model: torch.nn.Module) -> str | None:
    """Short sha256 over the model's parameters and buffers in key order; None for weight-free models."""
    state = model.state_dict()
    if not state:
        return None
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def check_config(config: RunConfig) -> None:
    if config.scale not in SCALES:
        raise UsageError(f"--scale {config.scale} is not supported; use one of {', '.join(map(str, SCALES))}")
    if config.height is not None and config.height < 2:
        raise UsageError(f"--height {config.height} is too small")
    if config.threads is not None and config.threads < 1:
        raise UsageError(f"--threads {config.threads} must be at least 1")
    if config.queue_size < 1:
        raise UsageError(f"queue_size {config.queue_size} must be at least 1")
    if config.workers is not None and config.workers < 1:
        raise UsageError(f"--workers {config.workers} must be at least 1")
    if config.encoder not in ENCODERS:
        raise UsageError(f"--encoder {config.encoder!r}: use one of {', '.join(ENCODERS)}")
    if config.segment_seconds is not None and config.segment_seconds <= 0:
        raise UsageError(f"--segment-seconds {config.segment_seconds} must be above zero")
    if (config.resume or config.work_dir) and not config.segment_seconds:
        raise UsageError("--resume and --work-dir belong to split runs; add --segment-seconds N")
    if config.inflight_per_worker < 1 or config.max_retries < 0:
        raise UsageError(f"inflight_per_worker {config.inflight_per_worker} must be >= 1 and "
                         f"max_retries {config.max_retries} >= 0")


def default_tile_batch(name: str, device: torch.device) -> tuple[int, int]:
    """(tile, batch) defaults by model and device: attention models are tiled (their cost grows with
    tile area squared), all-convolutional ones run whole frames; batches fill a GPU, while on a CPU a
    batch only multiplies the work per tile (compact: 1.7-3.9x slower per tile at 16)."""
    tile = engine.DEFAULT_TILE if MODELS[name].attention else 0
    return tile, engine.DEFAULT_BATCH if device.type == "cuda" else 1


def busy_cores(window_s: float = BUSY_SAMPLE_S) -> float | None:
    """How many cores other processes keep busy right now (Linux /proc/stat over ``window_s``), or
    None where that cannot be read. Unlike the load average, it does not remember a run that just ended."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def default_cpu_threads(busy: float | None = None) -> int:
    """Model threads on a CPU. torch's threads spin-wait, so a core that another process holds is
    ruinous: on 2 cores with a training job on one, compact ran end to end at 1.4 fps with 2 model
    threads and 5.4 with 1; on the same machine idle, 2 threads ran 8.1-9.3 fps and 1 thread 6.4-7.0
    (decode and encode fit in between). So all cores when the machine is idle (fewer than
    BUSY_CORES busy, measured now unless ``busy`` is given), else all cores but one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    if busy is None:
        busy = busy_cores()
    if busy is None:  # no /proc/stat: the load average, else assume a busy machine
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            busy = float(cores)
    return cores if busy < BUSY_CORES else max(1, cores - 1)


def build_upscaler(config: RunConfig, name: str, device: torch.device) -> engine.Upscaler:
    """Load model ``name`` and wrap it in an Upscaler set up from ``config`` (local thread or Ray actor)."""
    dtype = engine.resolve_precision(config.precision, device)
    model = load_model(name, config.weights, device=device, dtype=dtype)
    tile, batch = default_tile_batch(name, device)
    return engine.Upscaler(
        model,
        device=device,
        precision=config.precision,
        tile=tile if config.tile is None else config.tile,
        tile_overlap=engine.DEFAULT_TILE_OVERLAP if config.tile_overlap is None else config.tile_overlap,
        batch=batch if config.batch is None else config.batch,
        color_fix=config.color_fix,
        compile=config.compile,
        cuda_graphs=config.cuda_graphs,
    )


def choose_executor(config: RunConfig) -> str:
    """'local' or 'ray'; auto: ray when more than one GPU is visible or a Ray address is given."""
    if config.executor not in EXECUTORS:
        raise UsageError(f"--executor {config.executor!r}: use one of {', '.join(EXECUTORS)}")
    if config.executor != "auto":
        return config.executor
    return "ray" if config.ray_address or torch.cuda.device_count() > 1 else "local"


def open_session(config: RunConfig) -> Session:
    """Check the config, choose the model (one line says why when it is the default) and load it
    here or, with the Ray executor, once in each actor."""
    check_config(config)
    ray = choose_executor(config) == "ray"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if ray else engine.resolve_device(config.device)
    name = config.model
    if name is None:
        name, reason = default_model(device, config.weights)
        log.info(reason)
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    if ray:
        from vsr.runtime.ray_pool import RayPool

        pool = RayPool(config, name)
        return Session(config, name, None, pool.weights_hash, pool)
    if device.type == "cpu":
        torch.set_num_threads(config.threads or default_cpu_threads())
    upscaler = build_upscaler(config, name, device)
    return Session(config, name, upscaler, weights_digest(upscaler.model))


def _atomic(partial: Path, final: Path) -> None:
    os.replace(partial, final)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def upscale_file(session: Session, src: Path, dst: Path | None = None, output_dir: Path | None = None) -> RunSummary:
    """Upscale one video or image; returns what was done. Raises VsrError subclasses."""
    config = session.config
    t0 = time.monotonic()
    reader = VideoReader(src, start=config.start, duration=config.duration, deinterlace=config.deinterlace,
                         fps=config.fps, decoder=config.decoder)
    try:
        if reader.peek() is None:
            raise InputError(f"{src}: no video frame could be decoded"
                             + (" in the requested section" if reader.is_section else ""))
        info = reader.info
        codec = None if info.is_image else output_codec(config, info.pix_fmt)  # resolved once per file
        dst = dst or default_output(src, config, info, output_dir, codec)
        check_output(src, dst, config, info, codec)
        # A frame-pattern output is made atomic by its SequenceWriter; files by a .partial rename.
        partial = dst.with_name(dst.name + PARTIAL_SUFFIX) if not is_pattern(dst) else None
        try:
            if info.is_image:
                summary = _image(session, reader, partial, dst)
            elif config.segment_seconds:
                summary = _segmented(session, reader, partial, dst, codec)  # moves partial into place
                partial = None
            else:
                summary = _video(session, reader, partial, dst, codec)
            if partial is not None:
                _atomic(partial, dst)
        except BaseException as e:
            if partial is not None:
                _remove(partial)
            if isinstance(e, Exception) and not isinstance(e, VsrError):
                # A failure inside the model, a codec or the OS: one line naming the file, exit 1.
                raise ProcessingError(f"{src}: {e.__class__.__name__}: {e}") from e
            if isinstance(e, Interrupted) and str(src) not in str(e):
                raise Interrupted(f"{src}: {e}; nothing was written", e.exit_code - 128) from e
            if isinstance(e, (ProcessingError, UsageError, InputError)) and str(src) not in str(e):
                raise type(e)(f"{src}: {e}") from e  # every message names the file it is about
            raise
    finally:
        reader.close()
    summary.seconds = time.monotonic() - t0
    summary.damaged_packets = reader.damaged_packets
    listed = reader.info.frames_listed
    whole = not (reader.is_section or reader.deinterlaced)
    if whole and listed and summary.frames < listed:
        log.warning("%s: only %d of the %d frames its container lists could be read (truncated or damaged "
                    "file); all of those were written", src, summary.frames, listed)
    summary.stats["concealed_frames"] = reader.concealed_frames
    if reader.damaged_packets or reader.corrupt_frames:
        log.warning("%s: damaged input concealed: %d packet(s) the decoder rejected (their %d frame(s) written "
                    "as a repeat of the frame before), %d frame(s) decoded with errors", src,
                    reader.damaged_packets, reader.concealed_frames, reader.corrupt_frames)
    return summary


def _image(session: Session, reader: VideoReader, partial: Path, dst: Path) -> RunSummary:
    frame = next(iter(reader), None)
    if frame is None:
        raise InputError(f"{reader.path}: no image could be decoded")
    size = output_size(reader.info, session.config, None)
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
    size = output_size(info, config, settings.pix_fmt if partial is not None else None)
    section = reader.section_pts if reader.is_section else None
    tags = provenance(__version__, session.model_name, session.weights_hash)
    writer: VideoWriter | SequenceWriter | FFmpegWriter
    if partial is None:
        writer = SequenceWriter(dst, config.overwrite)
    else:
        if config.encoder == "ffmpeg":
            from vsr.video.ffmpeg_writer import FFmpegWriter as writer_class
        else:
            writer_class = VideoWriter
        writer = writer_class(partial, container_for(dst.suffix), info, size, settings, config.audio,
                              config.subtitles, section, tags)
    progress = Progress("none" if config.quiet else config.progress, info.frames, reader.path.name)
    executor: LocalExecutor
    if session.pool is not None:
        group = session.pool.frames_per_call(info.width, info.height)
        executor = session.pool.executor(size, config.queue_size, group, reader.path.name, info.frames)
    else:
        group = session.upscaler.frames_per_call(info.width, info.height)
        executor = LocalExecutor(session.upscaler, size, queue_size=config.queue_size, group=group)
    try:
        stats = executor.run(reader, writer, on_frame=progress.update, on_tick=progress.tick)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        progress.close()
    if stats.frames_written != stats.frames_read:
        raise ProcessingError(f"{reader.path}: read {stats.frames_read} frames but wrote {stats.frames_written}")
    copied = writer.copier.copied if writer.copier is not None else 0
    if getattr(writer, "repaired_pts", 0):
        log.warning("%s: %d frame(s) had timestamps that did not increase (damaged input); each was moved "
                    "one tick after the frame before", reader.path, writer.repaired_pts)
    return RunSummary(reader.path, dst, session.model_name, stats.frames_written, 0.0, size, copied,
                      stats={**vars(stats), "frame_bound": executor.frame_bound()},
                      note=stats.note())


def _segmented(session: Session, reader: VideoReader, partial: Path | None, dst: Path, codec: str) -> RunSummary:
    from vsr.farm import prepare_job, run_jobs

    if partial is None:
        raise UsageError("--segment-seconds writes a video file, not a frame pattern")
    job = prepare_job(session, reader, dst, partial, codec)
    reader.close()  # the segments are read by the workers
    try:
        run_jobs(session, [job], reader.path.name)
    except Interrupted as e:
        raise Interrupted(f"{reader.path}: {e}; {len(job.done)} of {len(job.tasks)} segment(s) are kept in "
                          f"{job.work.path}: rerun with --resume to finish", e.exit_code - 128) from e
    task = job.tasks[0]
    where = f"; segments per node {job.segments_per_node}" if job.segments_per_node else ""
    note = (f"{len(job.tasks)} segment(s), {job.reused} reused from an earlier run, {job.retries} "
            f"retr{'y' if job.retries == 1 else 'ies'}{where}")
    return RunSummary(reader.path, dst, session.model_name, job.frames_done, 0.0, task.size,
                      stats={"segments": len(job.tasks), "reused_segments": job.reused, "retries": job.retries,
                             "via_object_store": job.via_object_store, "repaired_dts": job.repaired_dts},
                      note=note)


def upscale_video(src: str | Path, dst: str | Path | None = None, config: RunConfig | None = None) -> RunSummary:
    """Library entry point: upscale one file with ``config`` (defaults when None)."""
    session = open_session(config or RunConfig())
    try:
        return upscale_file(session, Path(src), Path(dst) if dst is not None else None)
    finally:
        session.close()


def read_rgb(path: str | Path) -> list[np.ndarray]:
    """All frames of ``path`` as RGB arrays (tests and benchmarks)."""
    with VideoReader(path) as r:
        return [f.image for f in r]

