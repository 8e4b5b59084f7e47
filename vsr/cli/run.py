"""``vsr run`` and ``vsr farm``: their options (the same names as the YAML keys), input expansion, and
the loop over files. The work is vsr.jobs'; this module parses, prints and returns exit codes."""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vsr.config import OPTIONS, RunConfig, load_config
from vsr.config.checks import COLOR_FIX_CHOICES
from vsr.errors import InputError, Interrupted, UsageError, VsrError
from vsr.jobs import farm
from vsr.jobs.file import upscale_file
from vsr.jobs.outputs import default_output, looks_like_output, suffix_for
from vsr.jobs.session import open_session, with_scale
from vsr.media.decode import VideoReader
from vsr.models import AUTO, available_models, choose, describe
from vsr.media.probe import made_by_vsr
from vsr.media.sequence import is_sequence
from vsr.upscale.device import resolve_device

log = logging.getLogger("vsr")

MEDIA_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .ts .m2ts .mts .mpg .mpeg .flv .wmv .3gp .ogv .dv .mxf .y4m "
    ".png .jpg .jpeg .tif .tiff .bmp .webp .dpx .exr".split()
)  # what a folder input picks up


def run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="upscale videos or images", description="Upscale videos or images.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video or image files, folders or globs")
    p.add_argument("-o", "--output", type=Path, help="output file (one input only)")
    p.add_argument("--output-dir", type=Path, help="folder for the outputs (default: beside each input)")
    p.add_argument("--print-config", action="store_true", help="print the merged configuration and exit")
    add_run_options(p)


def farm_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("farm", help="upscale many videos in segments on every worker of a Ray cluster",
                       description="Upscale many videos, cut at keyframes into segments, on all the GPUs (or CPU "
                                   "actors) of a Ray cluster; rerunning the same command resumes. Also runs as "
                                   "`python pipelines/farm.py` and under `ray job submit`.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video files, folders or globs")
    p.add_argument("--manifest", type=Path, help="file of lines `INPUT` or `INPUT<TAB>OUTPUT` (relative paths "
                                                 "from the file's folder; # comments)")
    p.add_argument("--output-dir", type=Path, help="folder for the outputs (default: beside each input)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start unfinished files over instead of reusing their finished segments")
    p.add_argument("--summary-json", type=Path, help="also write the per-file summary here as JSON")
    add_run_options(p)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a run (model, encoding, section, execution, output) that a config file can also set."""
    S = argparse.SUPPRESS  # absent flags stay absent, so config files and VSR_* can supply them
    p.add_argument("--config", help="YAML file of options, or a preset: archive, prores, web, hevc, av1")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=S, metavar="MODEL",  # checked by the registry (config files set it too)
                   help=f"{', '.join(available_models())} or {AUTO} (the model --weights holds; `vsr weights list`); "
                   "default: auto with --weights, else the best available")
    g.add_argument("--weights", default=S, help="weights file or folder: vsr's, AdcSR's, or any checkpoint spandrel "
                   "recognises (Real-ESRGAN, Real-CUGAN, SwinIR, HAT, SPAN, ...)")
    g.add_argument("--scale", type=int, default=S,
                   help="output scale, up to the model's own (default: the model's own, 4 for vsr's models)")
    g.add_argument("--height", type=int, default=S, help="output height in pixels instead of --scale")
    g.add_argument("--denoise", type=float, default=S, metavar="S",
                   help="0 keeps grain and noise, 1 removes the most (compact; default: the model's)")
    g.add_argument("--threads", type=int, default=S, help="CPU threads for the model (default: all cores when idle, else all but one)")
    g.add_argument("--max-pixels", type=int, default=S, help="largest output frame in pixels (default 8192x8192)")
    g.add_argument("--device", default=S, help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument("--precision", default=S, choices=["auto", "fp32", "fp16", "bf16"])
    g.add_argument("--tile", type=int, default=S, help="tile size in input pixels (0: whole frame)")
    g.add_argument("--tile-overlap", type=int, default=S, help="overlap between tiles in input pixels")
    g.add_argument("--batch", type=int, default=S, help="tiles per forward pass")
    g.add_argument("--color-fix", default=S, choices=COLOR_FIX_CHOICES,
                   help="auto: the model's own (adain for AdcSR and compact, none for others' checkpoints)")
    g.add_argument("--compile", action="store_true", default=S, help="torch.compile the model")
    g.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=S)
    e = p.add_argument_group("encoding")
    e.add_argument("--codec", default=S, help="video encoder (default libx264)")
    e.add_argument("--crf", type=int, default=S, help="quality, x264 scale (default 18)")
    e.add_argument("--preset", default=S, help="encoder preset (default medium)")
    e.add_argument("--pix-fmt", default=S, help="output pixel format (default yuv420p for 8-bit input)")
    e.add_argument("--encoder-opt", action="append", default=S, metavar="KEY=VALUE",
                   help="option passed to the encoder (repeatable)")
    e.add_argument("--no-audio", dest="audio", action="store_false", default=S, help="drop audio streams")
    e.add_argument("--no-subtitles", dest="subtitles", action="store_false", default=S, help="drop subtitle streams")
    e.add_argument("--decoder", default=S, choices=["pyav", "decord"],
                   help="video decoder (decord: 8-bit sources, needs `pip install decord`)")
    e.add_argument("--encoder", default=S, choices=["pyav", "ffmpeg"],
                   help="who runs --codec: PyAV, or an ffmpeg binary (PATH, else imageio-ffmpeg's) for VAAPI, QSV, "
                        "VideoToolbox and other encoders PyAV lacks; needs `pip install 'vsr[ffmpeg]'`")
    e.add_argument("--deinterlace", default=S, choices=["auto", "on", "off", "double"],
                   help="bwdif before upscaling (auto: when the source is interlaced; double: a frame per field)")
    s = p.add_argument_group("section and files")
    s.add_argument("--start", type=float, default=S, help="start this many seconds into the video")
    s.add_argument("--duration", type=float, default=S, help="process this many seconds")
    s.add_argument("--video-stream", type=int, default=S, metavar="N",
                   help="index of the video stream to upscale (see vsr probe; default: the default stream)")
    s.add_argument("--fps", type=float, default=S,
                   help="frame rate of an image sequence input (frame_%%06d.png, or a folder read as one clip)")
    s.add_argument("--overwrite", action="store_true", default=S, help="replace existing outputs")
    s.add_argument("--skip-existing", action="store_true", default=S, help="skip inputs whose output exists")
    r = p.add_argument_group("execution")
    r.add_argument("--executor", default=S, choices=["auto", "local", "ray"],
                   help="local threads or Ray actors (auto: ray with more than one GPU or --ray-address)")
    r.add_argument("--workers", type=int, default=S, help="Ray actors (default: one per GPU, else one per node)")
    r.add_argument("--gpus-per-worker", type=float, default=S, metavar="N",
                   help="GPUs each Ray actor asks for (0.5: two actors per GPU; default 1 with GPUs)")
    r.add_argument("--ray-address", default=S, help="join this Ray cluster (auto: the one started on this machine)")
    r.add_argument("--segment-seconds", type=float, default=S,
                   help="cut videos at keyframes into segments of about N seconds, made in turn (local) or at "
                        "once (Ray) and joined without re-encoding; finished segments are kept for --resume")
    r.add_argument("--resume", action="store_true", default=S,
                   help="continue an interrupted --segment-seconds run: only unfinished segments are made")
    r.add_argument("--work-dir", default=S,
                   help="folder for the segments (default: beside the output); on a Ray cluster it must be "
                        "visible to every node, else segments come back through the object store")
    o = p.add_argument_group("output")
    o.add_argument("--progress", default=S, choices=["bar", "json", "none"])
    o.add_argument("--quiet", action="store_true", default=S, help="print errors only")


@dataclass
class Inputs:
    """The files a run takes, each with the folder its output goes to by default (None: beside it)."""

    files: list[tuple[Path, Path | None]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # vsr's own outputs, found in folders and globs

    @property
    def paths(self) -> list[Path]:
        return [p for p, _ in self.files]


def is_own_output(path: Path) -> bool:
    """A file vsr made: named as vsr names outputs, or tagged by vsr."""
    return looks_like_output(path) or made_by_vsr(path)


def expand_inputs(items: list[str], fps: float | None = None, output_suffix: str = "") -> Inputs:
    """Paths as given; frame patterns and (with fps) folders → one clip; other folders → their media
    files, whose outputs go to a sibling folder ``<folder><output_suffix>`` (``photos_x4/``); globs →
    their matches (sorted). Folders and globs never pick up vsr's own outputs (name it to upscale it
    again)."""
    found = Inputs()

    def take(paths: list[Path], out_dir: Path | None) -> None:
        for p in paths:
            if is_own_output(p):
                found.skipped.append(p)
            else:
                found.files.append((p, out_dir))

    for item in items:
        path = Path(item)
        if is_sequence(path, fps):
            found.files.append((path, None))  # one clip: a frame pattern, or a folder of frames with fps
        elif path.is_dir():
            media = sorted(p for p in path.iterdir() if p.suffix.lower() in MEDIA_EXTENSIONS and p.is_file())
            take(media, path.parent / f"{path.name}{output_suffix}" if output_suffix else None)
        elif not path.exists() and glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file())
            if not matches:
                raise InputError(f"{item}: no file matches")
            take(matches, None)
        else:
            found.files.append((path, None))
    if found.skipped:
        log.info("skipped %d file(s) vsr made (%s); name one directly to upscale it again", len(found.skipped),
                 ", ".join(p.name for p in found.skipped[:3]) + (", ..." if len(found.skipped) > 3 else ""))
    return found


def resolved(config: RunConfig) -> RunConfig:
    """``config`` with what a run would choose filled in: the model (the default one, with its reason
    said on stderr), the scale and the colour fix, without loading a model (a spandrel file is read)."""
    name, why = choose(config.model.name, resolve_device(config.model.device), config.model.weights)
    if why:
        log.info(why)
    descriptor = describe(name, config.model.weights)
    config = with_scale(config.replace(model=name), descriptor)
    return config.replace(color_fix=descriptor.colour_fix(config.model.color_fix))


def flags_of(args: argparse.Namespace) -> dict:
    """The run options given on the command line (absent flags stay absent: config files fill them)."""
    return {k: v for k, v in vars(args).items() if k in OPTIONS}


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, flags_of(args))
    if config.output.quiet:
        log.setLevel(logging.ERROR)
    if args.print_config:
        print(yaml.safe_dump(resolved(config).to_dict(), sort_keys=False), end="")
        return 0
    session = open_session(config)
    try:
        found = expand_inputs(args.inputs, config.timing.fps, suffix_for(session.config))
        inputs = found.paths
        if not inputs:
            raise InputError("no input left to upscale" + (" (all were vsr's own outputs)" if found.skipped else ""))
        if args.output is not None and len(inputs) > 1:
            raise UsageError(f"-o names one output but {len(inputs)} inputs were given; use --output-dir")
        failed, skipped, done = [], 0, 0
        for src, folder_out in found.files:
            out_dir = args.output_dir or folder_out
            try:
                if session.config.output.skip_existing and args.output is None:
                    with VideoReader(src, video_stream=session.config.timing.video_stream) as reader:
                        dst = default_output(src, session.config, reader.info, out_dir)
                    if dst.exists():
                        log.info("%s: skipped, %s exists", src, dst)
                        skipped += 1
                        continue
                summary = upscale_file(session, src, args.output, out_dir)
                done += 1
                log.info("%s → %s: %d frame(s) at %dx%d in %.1f s (%.2f fps)%s", src, summary.output, summary.frames,
                         *summary.size, summary.seconds, summary.fps, f"; {summary.note}" if summary.note else "")
            except VsrError as e:
                if len(inputs) == 1 or isinstance(e, Interrupted):
                    raise
                failed.append((src, e))
                print(f"vsr: error: {e}", file=sys.stderr)
        if len(inputs) > 1:
            log.warning("%d done, %d skipped, %d failed", done, skipped, len(failed))
    finally:
        session.close()
    return max((e.exit_code for _, e in failed), default=0)


def cmd_farm(args: argparse.Namespace) -> int:
    config = load_config(args.config, {**flags_of(args), "executor": "ray"})
    if config.execution.segment_seconds is None:
        config = config.replace(segment_seconds=farm.DEFAULT_SEGMENT_S)
    if config.output.quiet:
        log.setLevel(logging.ERROR)
    pairs = [(p, None) for p in expand_inputs(args.inputs).paths]
    if args.manifest is not None:
        pairs += farm.read_manifest(args.manifest)
    if not pairs:
        raise UsageError("no inputs: give video files, folders or globs, or --manifest FILE")
    try:
        results = farm.run_farm(config, pairs, args.output_dir)
    except Interrupted as e:
        raise e.also("finished segments are kept: rerun the same command to resume")
    print(farm.summary_table(results))
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    return max((r.exit_code for r in results), default=0)
