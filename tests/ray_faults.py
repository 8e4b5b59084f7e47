"""Ray actors that fail on cue, for the failure tests: subclasses of the production actor, handed to
``RayPool(actor_class=...)`` (the public seam), pickled by value to the actor processes."""

from __future__ import annotations

import os
import time

from vsr.config import RunConfig
from vsr.executors.ray_actor import UpscalerActor
from vsr.executors.ray_pool import RayPool
from vsr.jobs.session import Session, with_scale
from vsr.models import spec


def faulty(rank: int | str = "*", after: int = 0, mode: str = "raise", delay_s: float = 0.0) -> type:
    """An actor class whose actor ``rank`` ("*": every one) fails once it has done ``after`` calls in
    its current life: ``raise`` an exception, or ``exit`` its process (as a crash; Ray restarts it).
    Every call sleeps ``delay_s`` first."""

    class Faulty(UpscalerActor):
        def _fault(self) -> None:
            if delay_s:
                time.sleep(delay_s)
            if rank in ("*", self.rank) and self.calls >= after:
                if mode == "exit":
                    os._exit(1)
                raise RuntimeError(f"injected fault: actor {self.rank} fails after {after} call(s)")

        def upscale(self, batch, out_size):
            self._fault()
            return super().upscale(batch, out_size)

        def run(self, task):
            self._fault()
            return super().run(task)

    return Faulty


def ray_session(actor_class: type, **options: object) -> Session:
    """A session whose Ray actors run ``actor_class`` (what open_session does, with that class)."""
    config = RunConfig(executor="ray", **options).validate()
    name = config.model.name
    config = with_scale(config, spec(name).descriptor)
    pool = RayPool(config, name, actor_class=actor_class)
    return Session(config, name, None, pool.weights_hash, pool)
