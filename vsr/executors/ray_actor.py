"""The Ray actor side of the Ray executor: what runs inside each actor's process.

``UpscalerActor`` holds one Upscaler (built from the run's options on the device Ray gave it) for the
actor's lifetime. It upscales stacked (N, H, W, 3) batches that the driver's dispatcher
(vsr.executors.ray_frames) put into the object store, and runs task objects: any picklable callable
``task(upscaler) -> result`` (a split run's segment, vsr.jobs.split.worker), so this module imports
no job code. Ray restarts a dead actor, which rebuilds its model here.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np
import torch

from vsr.config import RunConfig
from vsr.errors import VsrError
from vsr.upscale.build import build_upscaler
from vsr.upscale.engine import Upscaler
from vsr.weights.formats import state_digest


class UpscalerActor:
    """Holds one Upscaler for its lifetime; Ray restarts it (model reloaded) if its process dies."""

    def __init__(self, options: dict, model: str, device: str, threads: int, rank: int) -> None:
        torch.set_num_threads(threads)
        self.rank, self.calls = rank, 0
        self.error: VsrError | None = None
        self.upscaler: Upscaler | None = None
        try:
            self.upscaler = build_upscaler(RunConfig(**options), model, torch.device(device))
        except VsrError as e:  # reported by info(): the driver re-raises it with its exit code
            self.error = e

    def info(self) -> dict:
        """Where this actor runs and what it loaded (raises the error its model failed to load with)."""
        import ray  # loaded in every actor process; imported here so the driver imports Ray only when used

        if self.error is not None:
            raise self.error
        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "pid": os.getpid(), "device": str(self.upscaler.device),
                "gpus": ctx.get_accelerator_ids().get("GPU", []),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "weights_hash": state_digest(self.upscaler.model.state_dict())}

    def frames_per_call(self, width: int, height: int) -> int:
        return self.upscaler.frames_per_call(width, height)

    def upscale(self, batch: np.ndarray, out_size: tuple[int, int]) -> tuple[np.ndarray, float, str]:
        """(N, H, W, 3) in, (N, H', W', 3) out as one array, with model seconds and the node id."""
        t0 = time.perf_counter()
        out = np.stack(self.upscaler.upscale(list(batch), out_size))
        self.calls += 1
        return out, time.perf_counter() - t0, node_id()

    def run(self, task: Callable[[Upscaler], Any]) -> tuple[Any, str]:
        """Run a task object on this actor's upscaler; its result and the node id."""
        result = task(self.upscaler)
        self.calls += 1
        return result, node_id()


def node_id() -> str:
    import ray  # see UpscalerActor.info

    return ray.get_runtime_context().get_node_id()
