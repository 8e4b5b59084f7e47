"""The Ray actor side of the Ray executor: what runs inside each actor's process.

``UpscalerActor`` holds one Upscaler (built from the run's config on the device Ray gave it) for the
actor's lifetime. It upscales stacked (N, H, W, 3) batches put into the object store by the driver's
dispatcher in vsr.runtime.ray_pool (which also spawns, probes and retires the actors), or makes whole
segments of a split run (vsr.segments). Ray restarts a dead actor, which rebuilds its model here.
The test hooks read from the environment on the driver (``VSR_RAY_TEST_FAIL``,
``VSR_RAY_TEST_DELAY_S``) are obeyed here: they make actors fail, die or slow down on cue.
"""

from __future__ import annotations

import os
import time

import numpy as np

from vsr.config import RunConfig
from vsr.errors import VsrError
from vsr.segments import SegmentResult, SegmentTask, encode_segment

TEST_FAIL_ENV = "VSR_RAY_TEST_FAIL"  # test hook "RANK:AFTER[:raise|exit]": fail after AFTER calls (RANK may be "*")
TEST_DELAY_ENV = "VSR_RAY_TEST_DELAY_S"  # test hook: seconds each actor sleeps per batch or segment


class UpscalerActor:
    """Holds one Upscaler for its lifetime; Ray restarts it (model reloaded) if its process dies."""

    def __init__(self, config: dict, model: str, device: str, threads: int, rank: int, hook: dict) -> None:
        import torch

        from vsr.pipeline import build_upscaler

        torch.set_num_threads(threads)
        self.rank, self.hook, self.batches = rank, hook, 0
        self.error: VsrError | None = None
        try:
            self.upscaler = build_upscaler(RunConfig(**config), model, torch.device(device))
        except VsrError as e:  # reported by info(): the driver re-raises it with its exit code
            self.error = e

    def info(self) -> dict:
        import ray

        from vsr.pipeline import weights_digest

        if self.error is not None:
            raise self.error
        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "pid": os.getpid(), "device": str(self.upscaler.device),
                "gpus": ctx.get_accelerator_ids().get("GPU", []), "weights_hash": weights_digest(self.upscaler.model)}

    def frames_per_call(self, width: int, height: int) -> int:
        return self.upscaler.frames_per_call(width, height)

    def _test_hook(self) -> None:
        if self.hook.get("delay_s"):
            time.sleep(self.hook["delay_s"])
        fail = self.hook.get("fail")
        if fail and fail[0] in ("*", str(self.rank)) and self.batches >= fail[1]:
            if fail[2] == "exit":
                os._exit(1)  # the process dies as on a crash; Ray restarts the actor
            raise RuntimeError(f"test hook: actor {self.rank} fails after {fail[1]} call(s)")

    def upscale(self, batch: np.ndarray, out_size: tuple[int, int]) -> tuple[np.ndarray, float, str]:
        """(N, H, W, 3) in, (N, H', W', 3) out as one array, with model seconds and the node id."""
        self._test_hook()
        import ray

        t0 = time.perf_counter()
        out = np.stack(self.upscaler.upscale(list(batch), out_size))
        self.batches += 1
        return out, time.perf_counter() - t0, ray.get_runtime_context().get_node_id()

    def segment(self, task: SegmentTask) -> SegmentResult:
        """Decode, upscale and encode one segment of a split run here (vsr.segments.encode_segment)."""
        self._test_hook()
        import ray

        result = encode_segment(self.upscaler, task)
        result.node = ray.get_runtime_context().get_node_id()
        self.batches += 1
        return result


def _test_hook() -> dict:
    fail, delay = os.environ.get(TEST_FAIL_ENV), os.environ.get(TEST_DELAY_ENV)
    rank, after, mode = ((fail + ":raise").split(":")[:3]) if fail else ("", "0", "")
    return {"fail": (rank, int(after), mode) if fail else None, "delay_s": float(delay) if delay else 0.0}
