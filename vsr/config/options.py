"""The options of a run, in five groups, and the one ``RunConfig`` that holds them.

Users see one flat set of names (YAML keys, ``VSR_*`` variables, ``upscale_video(**options)``,
``--flags``): ``crf``, ``segment_seconds``, ... Inside, they live in groups by what they decide:
``config.model`` (what runs and where), ``config.encode``, ``config.timing`` (which frames, read how),
``config.execution`` (threads, Ray, segments) and ``config.output`` (files and messages). Every flat
name belongs to exactly one group; :data:`OPTIONS` maps it there. The checks are in vsr.config.checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Iterator

from vsr.config.checks import check_combinations, check_value


@dataclass
class ModelOptions:
    """What runs and where."""

    name: str | None = None  # flat "model"; None: chosen by vsr.models.default_model (one line says why)
    weights: str | None = None  # file or folder; None: the model's default location (cache, package)
    scale: int | None = None  # output scale; None: 4 (vsr's models), or the native scale of a loaded file
    height: int | None = None  # output height in px instead of scale; the width keeps the aspect ratio
    denoise: float | None = None  # 0 keeps grain and noise, 1 removes the most; None: the model's default
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: fp16 on CUDA, fp32 elsewhere (the engine's NaN guard recomputes in fp32)
    tile: int | None = None  # LR tile side in px, 0 = whole frame; None: by the model (attention is tiled)
    tile_overlap: int | None = None  # LR px shared by neighbouring tiles; None: the engine's default
    batch: int | None = None  # tiles per forward pass; None: fills a GPU, 1 on CPUs (batches only add work)
    color_fix: str = "auto"  # auto (the model's: adain, AdcSR's own, or none for others' checkpoints) | adain | wavelet | none
    compile: bool = False  # torch.compile: a slow start for a faster steady state
    cuda_graphs: bool = True  # capture a CUDA graph per static shape (CUDA only)
    threads: int | None = None  # CPU threads for the model; None: all cores when idle, else all but one
    max_pixels: int = 8192 * 8192  # output pixels per frame; larger outputs are refused before any work


@dataclass
class EncodeOptions:
    """How the output video is encoded, and which other streams come along."""

    codec: str | None = None  # encoder; None: libx264 for 8-bit sources, libx265 above
    crf: int = 18  # quality on x264's scale (0 lossless .. 51), mapped onto every encoder's own
    preset: str = "medium"  # encoder speed preset, x264's names (mapped for SVT-AV1, VP9)
    pix_fmt: str | None = None  # None: the source's chroma and depth; RGB sources become yuv420p
    encoder_opt: list[str] | None = None  # KEY=VALUE options passed to the encoder last
    encoder: str = "pyav"  # pyav | ffmpeg (an ffmpeg binary: VAAPI, QSV, VideoToolbox encoders)
    audio: bool = True  # copy audio streams packet for packet (converted where the container needs it)
    subtitles: bool = True  # copy subtitle streams (converted where the container needs it)


@dataclass
class TimingOptions:
    """Which frames are read, and how."""

    start: float | None = None  # seconds from the first video frame (a preview section)
    duration: float | None = None  # seconds from start
    fps: float | None = None  # frame rate of image-sequence inputs (a folder is a sequence only with it)
    deinterlace: str = "auto"  # auto (interlaced sources) | on | off | double (a frame per field)
    decoder: str = "pyav"  # pyav | decord (8-bit only)
    video_stream: int | None = None  # index of the video stream to upscale; None: the default one


@dataclass
class ExecutionOptions:
    """Where the work runs: local threads, Ray actors, segments."""

    executor: str = "auto"  # auto | local | ray (auto: ray with more than one GPU visible or a ray_address)
    workers: int | None = None  # Ray actors; None: as many as the GPUs hold (gpus_per_worker), else one per node
    gpus_per_worker: float | None = None  # GPUs each Ray actor asks for (0.5: two per GPU); None: 1, 0 without GPUs
    ray_address: str | None = None  # join this Ray cluster ("auto": the one running here)
    inflight_per_worker: int = 2  # batches in flight per Ray actor: 2 keeps a GPU busy, bounds memory
    max_retries: int = 3  # resubmissions of a failed batch or segment before the run fails
    queue_size: int = 8  # frames buffered between decode, upscale and encode (each queue)
    segment_seconds: float | None = None  # cut videos at keyframes into segments of about this length
    resume: bool = False  # reuse the finished segments of an interrupted split run
    work_dir: str | None = None  # folder for segments (default: beside the output); shared on a cluster


@dataclass
class OutputOptions:
    """What is written where, and what is said."""

    progress: str = "bar"  # bar | json (one line per second) | none
    quiet: bool = False  # errors only (encoder banners too)
    overwrite: bool = False  # replace existing outputs
    skip_existing: bool = False  # skip inputs whose output exists


GROUPS: dict[str, type] = {"model": ModelOptions, "encode": EncodeOptions, "timing": TimingOptions,
                           "execution": ExecutionOptions, "output": OutputOptions}
RENAMED = {("model", "name"): "model"}  # (group, field) -> flat name where the two differs


@dataclass(frozen=True)
class Option:
    """One flat option: its group and field, its type as written in the dataclass, its default."""

    name: str
    group: str
    field: str
    kind: str
    default: Any


def _options() -> dict[str, Option]:
    out = {}
    for group, cls in GROUPS.items():
        for f in fields(cls):
            flat = RENAMED.get((group, f.name), f.name)
            assert flat not in out, f"option {flat} in two groups"
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out[flat] = Option(flat, group, f.name, str(f.type), default)
    return out


OPTIONS: dict[str, Option] = _options()  # flat name -> where it lives


class RunConfig:
    """Every option of a run, grouped; built from flat names: ``RunConfig(crf=20, model="compact")``.

    Unknown names raise TypeError (a programming error); values are checked by :meth:`validate`
    (rules in vsr.config.checks), which the CLI, the YAML and environment loaders and the library all call.
    ``sources`` says where each value that is not a default came from (a file, a ``VSR_*`` variable,
    ``"command line"``), so a message can name it.
    """

    model: ModelOptions
    encode: EncodeOptions
    timing: TimingOptions
    execution: ExecutionOptions
    output: OutputOptions

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
        groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for name, value in options.items():
            opt = OPTIONS[name]
            groups[opt.group][opt.field] = value
        for group, cls in GROUPS.items():
            setattr(self, group, cls(**groups[group]))
        self.sources: dict[str, str] = {}

    def get(self, name: str) -> Any:
        """The value of flat option ``name``."""
        opt = OPTIONS[name]
        return getattr(getattr(self, opt.group), opt.field)

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in OPTIONS:
            yield name, self.get(name)

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{name: value}``, as YAML and ``--print-config`` show it."""
        return dict(self.items())

    def replace(self, **options: Any) -> RunConfig:
        """A copy with some flat options changed (their sources kept where unchanged)."""
        new = RunConfig(**{**self.to_dict(), **options})
        new.sources = {k: v for k, v in self.sources.items() if k not in options}
        return new

    def validate(self) -> RunConfig:
        """Check every option (types, ranges, choices, combinations); UsageError naming the first bad
        one and where it came from. Returns self."""
        for name, value in self.items():
            opt = OPTIONS[name]
            setattr(getattr(self, opt.group), opt.field, check_value(name, value, self.sources.get(name)))
        check_combinations(self.get, self.sources)
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.items() if v != OPTIONS[k].default}
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

