"""A session: what stays loaded across the files of one run — the options, the chosen model, and the
model itself, on this machine's device (an Upscaler) or in Ray actors (a RayPool).

``open_session`` validates the options, chooses the executor and the model (one line says why when
it is the default), and loads it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vsr.config import RunConfig
from vsr.errors import OptionError
from vsr.executors.ray_pool import RayPool
from vsr.models import ModelDescriptor, choose, describe
from vsr.upscale.build import build_upscaler
from vsr.upscale.device import default_cpu_threads, resolve_device
from vsr.upscale.engine import Upscaler
from vsr.weights.formats import state_digest

log = logging.getLogger("vsr")


@dataclass
class Session:
    """The options and the loaded model of one run (kept across its files)."""

    config: RunConfig
    model_name: str
    upscaler: Upscaler | None  # None when Ray actors hold the model
    weights_hash: str | None = None  # short sha256 of the model's tensors (provenance)
    pool: RayPool | None = None  # the Ray actors, with executor ray
    native_scale: int = 0  # the model's own scale (a larger `height` is refused); 0: not checked

    def close(self) -> None:
        """Release the Ray actors (and Ray itself when this session started it)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401 - only whether it imports (the lent GPU machines have no Ray)
    except ImportError:
        return False
    return True


def choose_executor(config: RunConfig) -> str:
    """'local' or 'ray'. auto: ray when a Ray address is given, or when more than one GPU is visible
    and no single device was named (``cuda:N`` means that GPU, locally) and Ray is installed."""
    ex = config.execution
    if ex.executor != "auto":
        return ex.executor
    if ex.ray_address:
        return "ray"
    gpus = torch.cuda.device_count()
    if gpus > 1 and config.model.device in ("auto", "cuda"):
        if ray_installed():
            return "ray"
        log.info("%d GPUs are visible but Ray is not installed (pip install ray): running on one GPU here", gpus)
    return "local"


def open_session(config: RunConfig | None = None, **options: object) -> Session:
    """Validate ``config`` (or build one from flat ``options``), choose the model and load it here
    or, with the Ray executor, once in each actor."""
    config = (config.replace(**options) if options else config) if config is not None else RunConfig(**options)
    config.validate()
    ray = choose_executor(config) == "ray"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if ray else resolve_device(config.model.device)
    name, why = choose(config.model.name, device, config.model.weights)
    if why:
        log.info(why)
    if config.model.weights is not None:  # Ray actors and segment workers read it from where they run
        config = config.replace(weights=str(Path(config.model.weights).resolve()))
    if ray:
        descriptor = describe(name, config.model.weights)  # bad weights or scale fail before actors start
        config = with_scale(config, descriptor)
        pool = RayPool(config, name)
        return Session(config, descriptor.label, None, pool.weights_hash, pool, descriptor.scale)
    if device.type == "cpu":
        torch.set_num_threads(config.model.threads or default_cpu_threads())
    upscaler = build_upscaler(config, name, device)
    config = with_scale(config, upscaler.descriptor)
    return Session(config, upscaler.descriptor.label, upscaler, state_digest(upscaler.model.state_dict()),
                   native_scale=upscaler.descriptor.scale)


def with_scale(config: RunConfig, descriptor: ModelDescriptor) -> RunConfig:
    """``config`` with its scale resolved: the model's own when neither scale nor height is set; a
    scale above the model's own is refused (it would only be interpolated, not computed)."""
    scale, native = config.model.scale, descriptor.scale
    if scale is None and config.model.height is None:
        return config.replace(scale=native)
    if scale is not None and scale > native:
        raise OptionError("scale", scale, f"{descriptor.name} is a ×{native} model; use {native} or less "
                          "(larger scales would only be interpolated)", config.sources.get("scale"))
    return config
