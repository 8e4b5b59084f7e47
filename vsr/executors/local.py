"""Local executor: decode thread → bounded queue → Upscaler thread → bounded queue → encode thread.

The calling (main) thread only waits, reports progress and handles signals. Memory is bounded by
the queue sizes, whatever the video's length: ``frame_bound()`` is the most frames alive at once,
and the executor measures the real peak (frames are tracked with weak references, so a frame that
something still holds counts until it is really gone).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from vsr.media.encode import FrameWriter
from vsr.media.frame import Frame

POLL_S = 0.1  # seconds a blocked thread waits before checking whether the run was stopped
WORKER_JOIN_S = 5.0  # seconds a stopped run waits for a model call to return
END = object()  # end-of-stream marker in the queues (also the Ray dispatcher's)


class FrameUpscaler(Protocol):
    def upscale(self, frames: Sequence[np.ndarray], out_size: tuple[int, int]) -> list[np.ndarray]: ...


@dataclass
class ExecutorStats:
    frames_read: int = 0
    frames_written: int = 0
    peak_frames_alive: int = 0  # most Frame objects alive at once (input and output frames)
    seconds_decode: float = 0.0  # decode thread time spent in the reader (incl. colour conversion)
    seconds_upscale: float = 0.0  # worker thread time inside Upscaler.upscale
    seconds_encode: float = 0.0  # encode thread time inside the writer

    def note(self) -> str:
        """One line on how the work was spread, for the run summary (the local executor has none)."""
        return ""


class _Gauge:
    """Counts live objects via weakref finalizers and remembers the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alive = 0
        self.peak = 0

    def track(self, obj: object) -> None:
        with self.lock:
            self.alive += 1
            self.peak = max(self.peak, self.alive)
        weakref.finalize(obj, self._release)

    def _release(self) -> None:
        with self.lock:
            self.alive -= 1


class LocalExecutor:
    def __init__(self, upscaler: FrameUpscaler, out_size: tuple[int, int], queue_size: int = 8, group: int = 1):
        assert queue_size >= 1 and group >= 1
        self.upscaler, self.out_size = upscaler, out_size
        self.queue_size, self.group = queue_size, group
        self.stats = ExecutorStats()
        self._gauge = _Gauge()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._begun = threading.Lock()  # a thread begins (or, once stopped, never does) under this lock
        self._running: list[threading.Event] = []  # the done events of threads that began

    def frame_bound(self) -> int:
        """Most frames alive at once: both queues full, a group in and out of the worker, one in
        the decoder's hand and one in the encoder's."""
        return 2 * self.queue_size + 2 * self.group + 2

    def stop(self) -> None:
        """Ask every thread to finish as soon as it can (used on signals)."""
        self._stop.set()

    # -- the three threads ------------------------------------------------------------------------

    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> object:
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return END

    def _emit(self, q_out: queue.Queue, frame: Frame, image: np.ndarray) -> bool:
        """Queue ``frame`` with its upscaled ``image`` for the encoder (tracked like every frame);
        False when the run was stopped."""
        out = replace(frame, image=image)
        self._gauge.track(out)
        return self._put(q_out, out)

    def _guard(self, fn: Callable[[], None], done: threading.Event) -> Callable[[], None]:
        def run() -> None:
            with self._begun:
                if self._stop.is_set():  # stopped before this thread began: it touches nothing
                    return
                self._running.append(done)
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, re-raised there
                if self._error is None:
                    self._error = e
                self._stop.set()
            finally:
                done.set()

        return run

    def _decode(self, frames: Iterable[Frame], q_in: queue.Queue) -> None:
        it = iter(frames)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            frame = next(it, None)
            self.stats.seconds_decode += time.perf_counter() - t0
            if frame is None:
                break
            self._gauge.track(frame)
            self.stats.frames_read += 1
            if not self._put(q_in, frame):
                return
            del frame
        self._put(q_in, END)

    def _work(self, q_in: queue.Queue, q_out: queue.Queue) -> None:
        done = False
        while not done:
            batch: list[Frame] = []
            while len(batch) < self.group:
                item = self._get(q_in)
                if item is END:
                    done = True
                    break
                batch.append(item)
            if batch:
                t0 = time.perf_counter()
                images = self.upscaler.upscale([f.image for f in batch], self.out_size)
                self.stats.seconds_upscale += time.perf_counter() - t0
                for f, image in zip(batch, images, strict=True):
                    if not self._emit(q_out, f, image):
                        return
                del batch, images
        self._put(q_out, END)

    def _encode(self, sink: FrameWriter, q_out: queue.Queue, on_frame: Callable[[int], None] | None) -> None:
        while True:
            item = self._get(q_out)
            if item is END:
                return
            t0 = time.perf_counter()
            sink.write(item)
            self.stats.seconds_encode += time.perf_counter() - t0
            del item
            self.stats.frames_written += 1
            if on_frame is not None:
                on_frame(self.stats.frames_written)

    # -- driver -----------------------------------------------------------------------------------

    def _wind_down(self, done: list[threading.Event]) -> None:
        """Stop the threads. The decode and encode threads are waited for whatever it takes (they are
        inside PyAV calls on the reader and writer, which the caller closes next: closing them under a
        running thread crashes); the middle one, which touches no PyAV object, for at most
        WORKER_JOIN_S (it may be inside a long model call)."""
        with self._begun:  # from here on no thread begins: wait for those that did
            self.stop()
            running = list(self._running)
        decoded, worked, encoded = done
        for event in (decoded, encoded):
            if event in running:
                event.wait()
        if worked in running:
            worked.wait(WORKER_JOIN_S)

    def run(
        self,
        frames: Iterable[Frame],
        sink: FrameWriter,
        on_frame: Callable[[int], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> ExecutorStats:
        """Run to the end of ``frames``; re-raises the first error of any thread.

        ``on_frame(n)`` runs on the encode thread after each written frame; ``on_tick()`` runs on the
        calling thread about every POLL_S seconds (progress, signal checks). The calling thread waits
        on events, never in Thread.join/is_alive: a signal handler that raises (Ctrl-C) inside those
        can leave CPython 3.11 believing a running thread has stopped.
        """
        q_in: queue.Queue = queue.Queue(self.queue_size)
        q_out: queue.Queue = queue.Queue(self.queue_size)
        done = [threading.Event() for _ in range(3)]
        jobs = [("vsr-decode", lambda: self._decode(frames, q_in)), ("vsr-upscale", lambda: self._work(q_in, q_out)),
                ("vsr-encode", lambda: self._encode(sink, q_out, on_frame))]
        try:  # an interruption while the threads start winds down those that began
            for (name, fn), event in zip(jobs, done):
                threading.Thread(target=self._guard(fn, event), name=name, daemon=True).start()
            while not all(e.is_set() for e in done) and self._error is None:
                done[-1].wait(POLL_S)  # the encode thread finishes last
                if on_tick is not None:
                    on_tick()
        except BaseException:
            # An interruption (Interrupted raised by a signal handler) or a progress failure.
            self._wind_down(done)
            raise
        if self._error is not None:
            self._wind_down(done)
            raise self._error
        self.stats.peak_frames_alive = self._gauge.peak
        return self.stats
