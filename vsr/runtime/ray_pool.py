"""Ray executor: one Upscaler actor per GPU (fractional-CPU actors without GPUs), ordered, retried.

The driver reuses the local executor's decode and encode threads and ``run``; its middle thread is a
dispatcher: it stacks consecutive frames into one (N, H, W, 3) uint8/uint16 array per batch, puts it
once into the object store, keeps at most ``inflight_per_worker`` batches in flight per actor,
collects results with ``ray.wait`` and hands frames on in order from a bounded reorder window. A batch
whose actor raised, died or is being restarted by Ray goes to another live actor where there is one;
one that failed ``max_retries + 1`` times, or an empty pool, ends the run with ProcessingError.
Ray is imported lazily. When vsr starts Ray itself: no dashboard, every server on loopback. This is
the driver side; what runs inside the actors' processes is in vsr.runtime.ray_actor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vsr.config import RunConfig
from vsr.errors import ProcessingError, UsageError, VsrError
from vsr.runtime.local import _DONE, POLL_S, ExecutorStats, LocalExecutor
from vsr.runtime.ray_actor import UpscalerActor, _test_hook
from vsr.video.reader import Frame

log = logging.getLogger("vsr")

LOOPBACK = "127.0.0.1"
ACTOR_MAX_RESTARTS = 2  # times Ray restarts a dead actor (reloading its model) before giving up on it
ACTOR_FAILURE_LIMIT = 3  # consecutive failed batches after which an actor gets no more work
ACTOR_PROBE_LIMIT = 30  # failed probes of a restarting actor before it is retired
ACTOR_START_TIMEOUT_S = 600.0  # seconds to wait for the actors to load their models
REORDER_SLACK = 2  # outstanding batches (in flight + waiting for order) <= this x actors x in-flight
WAIT_S = 0.01  # seconds ray.wait blocks while frames may be waiting in the decode queue
_NO_IMAGE = np.empty((0, 0, 3), np.uint8)  # what a frame's metadata carries while its pixels are in Ray


def _ray() -> Any:
    import ray

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
        raise UsageError(f"--ray-address {address or '(local)'}: cannot start or join Ray ({e})") from e
    finally:
        if saved[0] is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved[0]
        rc.ENABLE_RAY_CLUSTER = saved[1]
    return True


def _reason(err: BaseException) -> str:
    """One line for a user: the actor's own exception where there is one."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


@dataclass
class _Slot:
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

    def __init__(self, config: RunConfig, model: str) -> None:
        self.config, self.model = config, model
        self.started = connect(config.ray_address)
        self.slots: list[_Slot] = []
        self.weights_hash: str | None = None
        self.node_names: dict[str, str] = {}
        self.probes: dict[Any, _Slot] = {}  # info() ref -> actor being restarted by Ray
        try:
            self._spawn()
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> None:
        ray = _ray()
        res = ray.cluster_resources()
        gpus = 0 if self.config.device.startswith(("cpu", "mps")) else int(res.get("GPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.node_names = {n["NodeID"]: f"{n['NodeManagerAddress']}/{n['NodeID'][:6]}" for n in nodes}
        workers = self.config.workers or gpus or len(nodes)
        cpus = float(res.get("CPU", 1))
        if gpus:
            if workers > gpus:
                raise UsageError(f"--workers {workers}: the Ray cluster has {gpus} GPU(s), one actor each")
            options, device, threads = {"num_gpus": 1}, "cuda", 1
        else:
            # A fraction of a CPU each, leaving room for one more: a replacement always fits.
            options = {"num_cpus": round(min(1.0, cpus / (workers + 1)), 4)}
            device, threads = "cpu", max(1, int(cpus // workers))
        self.kind = f"{workers} {'GPU' if gpus else 'CPU'} actor(s)"
        remote = ray.remote(max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=0)(UpscalerActor)
        cfg, hook = self.config.to_dict(), _test_hook()
        for rank in range(workers):
            actor = remote.options(scheduling_strategy="SPREAD", **options)
            self.slots.append(_Slot(rank, actor.remote(cfg, self.model, device, threads, rank, hook)))
        try:
            infos = ray.get([s.handle.info.remote() for s in self.slots], timeout=ACTOR_START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as e:
            raise ProcessingError(f"{self.kind} did not start within {ACTOR_START_TIMEOUT_S:.0f} s "
                                  f"(cluster resources: {res})") from e
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, VsrError):
                raise cause from None
            raise ProcessingError(f"Ray actors failed to start: {_reason(e)}") from e
        self.weights_hash = infos[0]["weights_hash"]
        log.debug("ray: %s: %s", self.kind, infos)

    def node_name(self, node_id: str) -> str:
        """``ip/id`` of a node (ids tell apart nodes that share a machine)."""
        return self.node_names.get(node_id) or f"?/{node_id[:6]}"

    def alive(self) -> list[_Slot]:
        return [s for s in self.slots if s.alive]

    def _first(self, method: str, *args: Any) -> Any:
        ray, last = _ray(), None
        for slot in self.alive():
            try:
                return ray.get(getattr(slot.handle, method).remote(*args))
            except ray.exceptions.RayError as e:
                last = e
        raise ProcessingError(f"no Ray actor could run {method}: {_reason(last) if last else 'none alive'}")

    def frames_per_call(self, width: int, height: int) -> int:
        return int(self._first("frames_per_call", width, height))

    def upscale_image(self, image: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
        return np.array(self._first("upscale", image[None], out_size)[0][0])

    def executor(self, out_size: tuple[int, int], queue_size: int, group: int, label: str = "",
                 frames: int | None = None) -> RayExecutor:
        """``group`` frames per batch, fewer when a short clip (``frames``) would leave actors idle."""
        if frames:
            group = max(1, min(group, -(-frames // len(self.alive() or [None]))))
        return RayExecutor(self, out_size, queue_size, group, label)

    # -- actor health (shared by the frame and segment dispatchers) --------------------------------

    def reset(self) -> None:
        """Forget in-flight work and probes of an earlier dispatcher (a stopped file of the session)."""
        self.probes.clear()
        for slot in self.alive():
            slot.inflight, slot.failures, slot.ready, slot.probe, slot.probes = 0, 0, True, None, 0

    def retire(self, slot: _Slot, err: BaseException, label: str) -> None:
        if slot.alive:
            log.warning("%s: Ray actor %d retired: %s", label, slot.rank, _reason(err))
        slot.alive = False

    def probe(self, slot: _Slot) -> None:
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

    def slot_failed(self, slot: _Slot, err: BaseException, label: str) -> None:
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


@dataclass
class RayStats(ExecutorStats):
    actors: int = 0
    retries: int = 0  # batch submissions beyond the first
    actor_failures: int = 0  # failed batches (exception, death or restart of the actor)
    frames_per_actor: dict[str, int] = field(default_factory=dict)
    frames_per_node: dict[str, int] = field(default_factory=dict)
    seconds_actor: float = 0.0  # summed model time inside the actors
    bytes_in_per_frame: float = 0.0  # bytes put into the object store per input frame (retries included)
    bytes_out_per_frame: float = 0.0  # bytes fetched from the object store per output frame
    driver_cpu_s_per_frame: float = 0.0  # CPU seconds of the whole driver process per frame
    dispatch_cpu_s_per_frame: float = 0.0  # of which the dispatch thread (put, submit, wait, get)
    peak_inflight_per_actor: int = 0  # most batches submitted to one actor at once (<= inflight_per_worker)
    peak_outstanding: int = 0  # most batches submitted and not yet written (<= the reorder window)

    def note(self) -> str:
        actors = " ".join(f"{k}:{v}" for k, v in sorted(self.frames_per_actor.items()))
        nodes = " ".join(f"{k}:{v}" for k, v in sorted(self.frames_per_node.items()))
        return (f"ray: {self.actors} actor(s), {self.retries} retr{'y' if self.retries == 1 else 'ies'}; "
                f"frames per actor {actors}; per node {nodes}")


@dataclass
class _Job:
    seq: int
    frames: list[Frame]  # metadata only (images dropped once the batch is in the object store)
    ref: Any  # ObjectRef of the stacked input
    nbytes: int
    attempts: int = 0
    tried: set[int] = field(default_factory=set)


class RayExecutor(LocalExecutor):
    """LocalExecutor's decode and encode threads; the middle thread dispatches batches to the pool."""

    def __init__(self, pool: RayPool, out_size: tuple[int, int], queue_size: int, group: int, label: str = "") -> None:
        super().__init__(pool, out_size, queue_size=queue_size, group=group)
        self.pool, self.label = pool, label
        self.inflight, self.max_retries = pool.config.inflight_per_worker, pool.config.max_retries
        pool.reset()  # a previous file of the session may have been stopped mid-run
        self.window = REORDER_SLACK * self.inflight * len(pool.alive())
        self.stats: RayStats = RayStats(actors=len(pool.alive()))
        self._bytes_in = self._bytes_out = 0
        self._pending: dict[Any, tuple[_Job, _Slot]] = {}  # result ref -> (batch, actor)
        self._queued: deque[_Job] = deque()  # batches ready to submit; retries first
        self._ordered: dict[int, tuple[_Job, np.ndarray]] = {}  # finished, waiting for their turn

    def frame_bound(self) -> int:
        """Driver-heap frames: the decode queue, a batch being gathered, the decoder's and encoder's
        frame, the reorder window's outputs and the encode queue. Pixels of batches in flight live
        in Ray's object store (at most ``window`` input and output batches)."""
        return 2 * self.queue_size + self.group + 2 + self.window * self.group

    # -- dispatch thread ----------------------------------------------------------------------------

    def _work(self, q_in: queue.Queue, q_out: queue.Queue) -> None:
        cpu0, process_cpu0 = time.thread_time(), time.process_time()  # the decoder starts at the same time
        gathering: list[Frame] = []
        seq = emit = 0
        eof = False
        while not self._stop.is_set():
            took = False
            while not eof and not self._queued and seq - emit < self.window and len(gathering) < self.group:
                try:
                    item = q_in.get(timeout=POLL_S) if not self._pending else q_in.get_nowait()
                except queue.Empty:
                    break
                if item is _DONE:
                    eof = True
                else:
                    gathering.append(item)
                    took = True
            if gathering and (len(gathering) == self.group or eof):
                stacked = np.stack([f.image for f in gathering])  # one array, put once (retries reuse it)
                meta = [replace(f, image=_NO_IMAGE) for f in gathering]
                self._queued.append(_Job(seq, meta, _ray().put(stacked), stacked.nbytes))
                seq, gathering = seq + 1, []
                self.stats.peak_outstanding = max(self.stats.peak_outstanding, seq - emit)
                del stacked, meta
            self._submit()
            want = not eof and not self._queued and seq - emit < self.window
            self._collect(0 if took else WAIT_S if want else POLL_S)
            while emit in self._ordered:
                job, out = self._ordered.pop(emit)
                for i, meta_frame in enumerate(job.frames):
                    if not self._emit(q_out, meta_frame, out[i]):
                        return
                del job, out
                emit += 1
            if eof and not gathering and not self._queued and not self._pending and emit == seq:
                break
        n = max(self.stats.frames_read, 1)
        self.stats.dispatch_cpu_s_per_frame = (time.thread_time() - cpu0) / n
        self.stats.driver_cpu_s_per_frame = (time.process_time() - process_cpu0) / n
        self.stats.bytes_in_per_frame, self.stats.bytes_out_per_frame = self._bytes_in / n, self._bytes_out / n
        self._put(q_out, _DONE)

    def _submit(self) -> None:
        while self._queued:
            free = [s for s in self.pool.alive() if s.ready and s.inflight < self.inflight]
            job = self._queued[0]
            fresh = [s for s in free if s.rank not in job.tried]  # an actor this batch has not failed on
            slot = min(fresh or free, key=lambda s: (s.inflight, s.rank), default=None)
            if slot is None:
                break
            self._queued.popleft()
            job.attempts += 1
            job.tried.add(slot.rank)
            slot.inflight += 1
            self.stats.peak_inflight_per_actor = max(self.stats.peak_inflight_per_actor, slot.inflight)
            self._bytes_in += job.nbytes
            self._pending[slot.handle.upscale.remote(job.ref, self.out_size)] = (job, slot)
        if self._queued and not self.pool.alive():
            raise ProcessingError(f"{self.label}: all {len(self.pool.slots)} Ray actors failed")

    def _collect(self, timeout: float) -> None:
        ray = _ray()
        refs = [*self._pending, *self.pool.probes]
        if not refs:
            return
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in ready:
            if ref in self.pool.probes:
                self.pool.probed(ref, self.label)
                continue
            job, slot = self._pending.pop(ref)
            slot.inflight -= 1
            try:
                out, seconds, node = ray.get(ref)
            except ray.exceptions.RayError as e:
                self._failed(job, slot, e)
                continue
            slot.failures = 0
            job.ref = None  # the input batch can leave the object store
            self._bytes_out += out.nbytes
            self.stats.seconds_actor += seconds
            n, actor, node = len(job.frames), f"a{slot.rank}", self.pool.node_name(node)
            self.stats.frames_per_actor[actor] = self.stats.frames_per_actor.get(actor, 0) + n
            self.stats.frames_per_node[node] = self.stats.frames_per_node.get(node, 0) + n
            self._ordered[job.seq] = (job, out)

    def _failed(self, job: _Job, slot: _Slot, err: BaseException) -> None:
        self.stats.actor_failures += 1
        self.pool.slot_failed(slot, err, self.label)
        first, last = job.frames[0].index, job.frames[-1].index
        if job.attempts > self.max_retries:
            raise ProcessingError(f"{self.label}: frames {first}-{last} failed {job.attempts} times on Ray "
                                  f"actors (max_retries {self.max_retries}); last error: {_reason(err)}")
        log.debug("%s: frames %d-%d failed on actor %d (%s); retrying", self.label, first, last, slot.rank,
                  _reason(err))
        self.stats.retries += 1
        self._queued.appendleft(job)
