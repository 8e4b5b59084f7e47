"""An Upscaler from a run's options: the model loaded by name, tile and batch defaults by model and device.

Used where a run's upscaler is made: the local session (vsr.jobs.session) and each Ray actor
(vsr.executors.ray_actor), so both get the same defaults.
"""

from __future__ import annotations

import logging

import torch

from vsr.config import RunConfig
from vsr.models import ModelDescriptor, load_model
from vsr.upscale.device import resolve_precision
from vsr.upscale.engine import DEFAULT_BATCH, Upscaler
from vsr.upscale.tiling import DEFAULT_TILE, DEFAULT_TILE_OVERLAP

log = logging.getLogger("vsr")


def default_tile_batch(descriptor: ModelDescriptor, device: torch.device) -> tuple[int, int]:
    """(tile, batch) defaults by model and device: attention models are tiled (their cost grows with
    tile area squared), all-convolutional ones run whole frames; batches fill a GPU, while on a CPU a
    batch only multiplies the work per tile (compact: 1.7-3.9x slower per tile at 16)."""
    tile = DEFAULT_TILE if descriptor.tiling else 0
    return tile, DEFAULT_BATCH if device.type == "cuda" else 1


def build_upscaler(config: RunConfig, name: str, device: torch.device) -> Upscaler:
    """Load model ``name`` and wrap it in an Upscaler set up from ``config`` (local thread or Ray actor)."""
    m = config.model
    dtype = resolve_precision(m.precision, device)
    model = load_model(name, m.weights, device=device, dtype=dtype, denoise=m.denoise)
    tile, batch = default_tile_batch(model.descriptor, device)
    if m.tile and not model.descriptor.tiles_well:
        log.warning("%s: tiles change this model's result (spandrel: its authors discourage tiling, or it "
                    "tiles frames itself); `tile` 0 runs whole frames", model.descriptor.label)
    return Upscaler(
        model,
        device=device,
        precision=m.precision,
        tile=tile if m.tile is None else m.tile,
        tile_overlap=DEFAULT_TILE_OVERLAP if m.tile_overlap is None else m.tile_overlap,
        batch=batch if m.batch is None else m.batch,
        color_fix=m.color_fix,
        compile=m.compile,
        cuda_graphs=m.cuda_graphs,
    )
