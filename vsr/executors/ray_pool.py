"""The Ray connection and the actors of a session: one Upscaler actor per GPU (``gpus_per_worker``
each; fractional-CPU actors without GPUs), spawned, probed while Ray restarts them, and retired.

Two dispatchers use a pool: frames (vsr.executors.ray_frames) and a split run's segments
(vsr.jobs.split.schedule). Ray is imported only when a pool is made. When vsr starts Ray itself: no
dashboard, every server on loopback. What runs inside the actors' processes is vsr.executors.ray_actor.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsr.config import RunConfig
from vsr.errors import ProcessingError, UsageError, VsrError
from vsr.executors.ray_actor import UpscalerActor

log = logging.getLogger("vsr")

LOOPBACK = "127.0.0.1"
ACTOR_MAX_RESTARTS = 2  # times Ray restarts a dead actor (reloading its model) before giving up on it
ACTOR_FAILURE_LIMIT = 3  # consecutive failed batches after which an actor gets no more work
ACTOR_PROBE_LIMIT = 30  # failed probes of a restarting actor before it is retired
ACTOR_START_TIMEOUT_S = 600.0  # seconds to wait for the actors to load their models


def _ray() -> Any:
    import ray  # a second or more to import: only when a pool is made

    return ray


def connect(address: str | None) -> bool:
    """Join ``address`` ("auto": the cluster running on this machine) or start a private local Ray
    (no dashboard, loopback only). Reuses a connection the host program made. True if it called
    ray.init (the caller then owns ray.shutdown)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    # Ray binds its servers to the node IP, and on Linux resolves even 127.0.0.1 to the outward
    # address unless clusters are switched off (as Ray does on macOS and Windows): switch them off
    # for a private instance, in this process and the servers it starts, then restore.
    from ray._private import ray_constants as rc

    name = rc.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved = (os.environ.get(name), rc.ENABLE_RAY_CLUSTER)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            os.environ[name], rc.ENABLE_RAY_CLUSTER = "0", False
            ray.init(address="local", include_dashboard=False, _node_ip_address=LOOPBACK, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"`ray_address` {address or '(local)'}: cannot start or join Ray ({e})") from e
    finally:
        if saved[0] is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved[0]
        rc.ENABLE_RAY_CLUSTER = saved[1]
    return True


def reason(err: BaseException) -> str:
    """One line for a user: the actor's own exception where there is one."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


@dataclass
class Slot:
    rank: int
    handle: Any
    inflight: int = 0
    alive: bool = True  # False: dead for good, or retired after ACTOR_FAILURE_LIMIT failures
    ready: bool = True  # False while Ray restarts it (a probe is out)
    failures: int = 0  # consecutive failed batches
    probe: Any = None  # ObjectRef of the pending info() call while restarting
    probes: int = 0  # probes sent since it last answered


class RayPool:
    """The Ray connection and the actors of one session (kept across the files of a `vsr run`)."""

    def __init__(self, config: RunConfig, model: str, actor_class: type = UpscalerActor) -> None:
        """``actor_class``: UpscalerActor or a subclass of it (what each actor process runs)."""
        self.config, self.model, self.actor_class = config, model, actor_class
        self.ray = _ray()  # the ray module, for the dispatchers
        self.started = connect(config.execution.ray_address)
        self.slots: list[Slot] = []
        self.weights_hash: str | None = None
        self.node_names: dict[str, str] = {}
        self.probes: dict[Any, Slot] = {}  # info() ref -> actor being restarted by Ray
        try:
            self._spawn()
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> None:
        ray = _ray()
        ex, device = self.config.execution, self.config.model.device
        res = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.node_names = {n["NodeID"]: f"{n['NodeManagerAddress']}/{n['NodeID'][:6]}" for n in nodes}
        gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
        on_cpu = device.startswith(("cpu", "mps"))
        per_actor = ex.gpus_per_worker if ex.gpus_per_worker is not None else (0.0 if on_cpu or not gpus else 1.0)
        if per_actor:
            capacity = int(gpus / per_actor + 1e-9)
            workers = ex.workers or capacity
            if workers > capacity:
                raise UsageError(f"`workers` {workers}: the Ray cluster has {gpus:g} GPU(s) and each actor takes "
                                 f"{per_actor:g} (`gpus_per_worker`): at most {capacity} actor(s)")
            options = {"num_gpus": per_actor}
            actor_device, threads = ("cpu" if on_cpu else "cuda"), 1
        else:
            workers = ex.workers or len(nodes)
            # A fraction of a CPU each, leaving room for one more: a replacement always fits.
            options = {"num_cpus": round(min(1.0, cpus / (workers + 1)), 4)}
            actor_device, threads = "cpu", max(1, int(cpus // workers))
        self.kind = f"{workers} {'GPU' if per_actor else 'CPU'} actor(s)"
        self.on_cpu = actor_device == "cpu"  # where the actors compute
        remote = ray.remote(max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=0)(self.actor_class)
        options_flat = self.config.to_dict()
        for rank in range(workers):
            actor = remote.options(scheduling_strategy="SPREAD", **options)
            self.slots.append(Slot(rank, actor.remote(options_flat, self.model, actor_device, threads, rank)))
        try:
            infos = ray.get([s.handle.info.remote() for s in self.slots], timeout=ACTOR_START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as e:
            raise ProcessingError(f"{self.kind} did not start within {ACTOR_START_TIMEOUT_S:.0f} s "
                                  f"(cluster resources: {res})") from e
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, VsrError):
                raise cause from None
            raise ProcessingError(f"Ray actors failed to start: {reason(e)}") from e
        self.weights_hash = infos[0]["weights_hash"]
        self.infos = infos
        log.debug("ray: %s: %s", self.kind, infos)

    def node_name(self, node_id: str) -> str:
        """``ip/id`` of a node (ids tell apart nodes that share a machine)."""
        return self.node_names.get(node_id) or f"?/{node_id[:6]}"

    def alive(self) -> list[Slot]:
        return [s for s in self.slots if s.alive]

    def _first(self, method: str, *args: Any) -> Any:
        ray, last = _ray(), None
        for slot in self.alive():
            try:
                return ray.get(getattr(slot.handle, method).remote(*args))
            except ray.exceptions.RayError as e:
                last = e
        raise ProcessingError(f"no Ray actor could run {method}: {reason(last) if last else 'none alive'}")

    def frames_per_call(self, width: int, height: int) -> int:
        return int(self._first("frames_per_call", width, height))

    def upscale_image(self, image: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
        return np.array(self._first("upscale", image[None], out_size)[0][0])

    # -- actor health (shared by the frame and segment dispatchers) --------------------------------

    def reset(self) -> None:
        """Forget in-flight work and probes of an earlier dispatcher (a stopped file of the session)."""
        self.probes.clear()
        for slot in self.alive():
            slot.inflight, slot.failures, slot.ready, slot.probe, slot.probes = 0, 0, True, None, 0

    def retire(self, slot: Slot, err: BaseException, label: str) -> None:
        if slot.alive:
            log.warning("%s: Ray actor %d retired: %s", label, slot.rank, reason(err))
        slot.alive = False

    def probe(self, slot: Slot) -> None:
        """Ask an actor Ray is restarting to answer; it gets work again once it does."""
        slot.ready = False
        if slot.alive and slot.probe is None:
            slot.probes += 1
            slot.probe = slot.handle.info.remote()
            self.probes[slot.probe] = slot

    def probed(self, ref: Any, label: str) -> None:
        """Handle the answer (or failure) of a probe returned by ray.wait."""
        ray = _ray()
        slot = self.probes.pop(ref)
        slot.probe = None
        try:
            ray.get(ref)
        except (ray.exceptions.ActorDiedError, ray.exceptions.RayTaskError) as e:
            self.retire(slot, e, label)  # gone for good, or its restarted model failed to load
        except ray.exceptions.RayError as e:
            if slot.probes >= ACTOR_PROBE_LIMIT:
                self.retire(slot, e, label)
            self.probe(slot)
        else:
            slot.ready, slot.probes = True, 0

    def slot_failed(self, slot: Slot, err: BaseException, label: str) -> None:
        """A call on ``slot`` failed: retire it (dead, or failing again and again) or probe it (restarting)."""
        ray = _ray()
        slot.failures += 1
        if isinstance(err, ray.exceptions.ActorDiedError) or (
            slot.failures >= ACTOR_FAILURE_LIMIT and len(self.alive()) > 1
        ):
            self.retire(slot, err, label)
        elif isinstance(err, ray.exceptions.RayActorError):  # restarting or unreachable
            self.probe(slot)

    def close(self) -> None:
        ray = _ray()
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.handle, no_restart=True)
        self.slots = []
        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False


