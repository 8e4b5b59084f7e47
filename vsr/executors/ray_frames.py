"""The Ray executor for frames: the local executor's decode and encode threads, with a dispatcher in
the middle instead of an upscaler.

The dispatcher stacks consecutive frames into one (N, H, W, 3) uint8/uint16 array per batch, puts it
once into the object store, keeps at most ``inflight_per_worker`` batches in flight per actor,
collects results with ``ray.wait`` and hands frames on in order from a bounded reorder window. A batch
whose actor raised, died or is being restarted by Ray goes to another live actor where there is one;
one that failed ``max_retries + 1`` times, or an empty pool, ends the run with ProcessingError.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vsr.errors import ProcessingError
from vsr.executors.local import END, POLL_S, ExecutorStats, LocalExecutor
from vsr.executors.ray_pool import RayPool, Slot, reason
from vsr.media.frame import Frame

log = logging.getLogger("vsr")

REORDER_SLACK = 2  # outstanding batches (in flight + waiting for order) <= this x actors x in-flight
WAIT_S = 0.01  # seconds ray.wait blocks while frames may be waiting in the decode queue
NO_IMAGE = np.empty((0, 0, 3), np.uint8)  # what a frame's metadata carries while its pixels are in Ray


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

    def __init__(self, pool: RayPool, out_size: tuple[int, int], queue_size: int, group: int, label: str = "",
                 frames: int | None = None) -> None:
        """``group`` frames per batch, fewer when a short clip (``frames``) would leave actors idle."""
        if frames:
            group = max(1, min(group, -(-frames // len(pool.alive() or [None]))))
        super().__init__(pool, out_size, queue_size=queue_size, group=group)
        self.pool, self.label, self.ray = pool, label, pool.ray
        ex = pool.config.execution
        self.inflight, self.max_retries = ex.inflight_per_worker, ex.max_retries
        pool.reset()  # a previous file of the session may have been stopped mid-run
        self.window = REORDER_SLACK * self.inflight * len(pool.alive())
        self.stats: RayStats = RayStats(actors=len(pool.alive()))
        self._bytes_in = self._bytes_out = 0
        self._pending: dict[Any, tuple[_Job, Slot]] = {}  # result ref -> (batch, actor)
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
                if item is END:
                    eof = True
                else:
                    gathering.append(item)
                    took = True
            if gathering and (len(gathering) == self.group or eof):
                stacked = np.stack([f.image for f in gathering])  # one array, put once (retries reuse it)
                meta = [replace(f, image=NO_IMAGE) for f in gathering]
                self._queued.append(_Job(seq, meta, self.ray.put(stacked), stacked.nbytes))
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
        self._put(q_out, END)

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
        ray = self.ray
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

    def _failed(self, job: _Job, slot: Slot, err: BaseException) -> None:
        self.stats.actor_failures += 1
        self.pool.slot_failed(slot, err, self.label)
        first, last = job.frames[0].index, job.frames[-1].index
        if job.attempts > self.max_retries:
            raise ProcessingError(f"{self.label}: frames {first}-{last} failed {job.attempts} times on Ray "
                                  f"actors (max_retries {self.max_retries}); last error: {reason(err)}")
        log.debug("%s: frames %d-%d failed on actor %d (%s); retrying", self.label, first, last, slot.rank,
                  reason(err))
        self.stats.retries += 1
        self._queued.appendleft(job)
