"""Run configuration: one dataclass, filled from YAML files, VSR_* variables and flags.

Precedence, lowest first: the packaged ``configs/default.yaml`` < ``~/.config/vsr/config.yaml``
< ``--config FILE`` < ``VSR_*`` environment variables < command-line flags.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from vsr.errors import UsageError

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
ENV_PREFIX = "VSR_"
PRESETS = Path(__file__).parent / "configs" / "presets"  # `--config NAME` finds NAME.yaml here


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vsr" / "config.yaml"


@dataclass
class RunConfig:
    model: str | None = None  # None: chosen by vsr.models.default_model
    weights: str | None = None
    scale: int = 4
    height: int | None = None
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None  # None: the engine's default
    tile_overlap: int | None = None
    batch: int | None = None
    color_fix: str = "adain"
    compile: bool = False
    cuda_graphs: bool = True
    codec: str | None = None
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str | None = None
    audio: bool = True
    subtitles: bool = True
    deinterlace: str = "auto"  # auto | on | off | double
    decoder: str = "pyav"  # pyav | decord (8-bit only)
    encoder: str = "pyav"  # pyav | ffmpeg (an ffmpeg binary, for VAAPI, QSV, VideoToolbox, ... encoders)
    fps: float | None = None  # frame rate of image-sequence inputs (a folder is a sequence only with it)
    encoder_opt: list[str] | None = None  # key=value options passed to the encoder
    threads: int | None = None  # CPU threads for the model; None: all cores when idle, else all but one
    max_pixels: int = 8192 * 8192  # output pixels per frame; larger outputs are refused up front
    queue_size: int = 8
    progress: str = "bar"
    quiet: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    start: float | None = None  # seconds into the input
    duration: float | None = None  # seconds to process from start
    executor: str = "auto"  # auto | local | ray (auto: ray with >1 GPU visible or a ray_address)
    workers: int | None = None  # Ray actors; None: one per GPU in the cluster, else one per node
    ray_address: str | None = None  # join this Ray cluster ("auto": the one running here)
    inflight_per_worker: int = 2  # batches in flight per Ray actor (backpressure)
    max_retries: int = 3  # resubmissions of a failed batch or segment before the run fails
    segment_seconds: float | None = None  # split videos at keyframes into segments of about this length
    resume: bool = False  # reuse the finished segments of an interrupted split run
    work_dir: str | None = None  # folder for segments, visible to every node (default: beside the output)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in fields(RunConfig)}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a YAML or environment value into the field's type, or raise UsageError naming it."""
    if value is None:
        return None
    kind = _FIELDS[name].type
    try:
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if "int" in kind:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if "float" in kind:
            return float(value)
        if "list" in kind:
            items = value if isinstance(value, list) else str(value).split(",")
            return [str(v).strip() for v in items if str(v).strip()]
        return str(value)
    except ValueError as e:
        raise UsageError(f"{source}: {name}={value!r} is not a valid {kind}") from e


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise UsageError(f"{path}: cannot read config file ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config file must be a mapping of option: value")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise UsageError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in _FIELDS:
                out[name] = _coerce(name, value, key)
    return out


def load_config(
    config_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    user_file: Path | None = None,
) -> RunConfig:
    """Merge the layers; ``flags`` holds only options given on the command line."""
    merged: dict[str, Any] = _read_yaml(DEFAULT_CONFIG)
    user = user_file if user_file is not None else user_config_path()
    if user.is_file():
        merged.update(_read_yaml(user))
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file() and (PRESETS / f"{config_file}.yaml").is_file():
            path = PRESETS / f"{config_file}.yaml"  # a named preset shipped with vsr
        if not path.is_file():
            raise UsageError(f"{path}: config file not found; presets: {', '.join(presets())}")
        merged.update(_read_yaml(path))
    merged.update(_read_env(os.environ if environ is None else environ))
    merged.update({k: v for k, v in (flags or {}).items() if k in _FIELDS})
    return RunConfig(**merged)
