"""Progress on stderr: a tqdm bar, one JSON line per second (farms, scripts), or nothing."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import TextIO

from tqdm import tqdm

from vsr.errors import UsageError

log = logging.getLogger("vsr")

MODES = ("bar", "json", "none")
JSON_INTERVAL_S = 1.0  # seconds between JSON progress lines


class Progress:
    """Thread-safe: ``update`` may be called from the encode thread, ``tick``/``close`` from main."""

    def __init__(self, mode: str, total: int | None, label: str, stream: TextIO | None = None,
                 segments: int | None = None, initial: int = 0, initial_segments: int = 0) -> None:
        """``segments``: the segment count of a split run (then segments done are reported too);
        ``initial``/``initial_segments``: frames and segments already done by an earlier run (resume),
        which count as done but not towards fps and ETA."""
        if mode not in MODES:
            raise UsageError(f"unknown progress mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode, self.total, self.label = mode, total, label
        self.stream = stream or sys.stderr
        self.done = self.initial = initial
        self.segments, self.segments_done = segments, initial_segments
        self.t0 = time.monotonic()
        self._last_json = 0.0
        self._lock = threading.Lock()
        self.bar = None
        if mode == "bar":
            self.bar = tqdm(total=total, initial=initial, desc=label, unit="frame", file=self.stream,
                            dynamic_ncols=True, leave=True)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None and self.segments is not None:
            self.bar.set_postfix_str(f"segments {self.segments_done}/{self.segments}", refresh=False)

    def segment_done(self, done: int) -> None:
        """One more segment finished; ``done`` frames are finished in all."""
        with self._lock:
            self.segments_done += 1
        self._postfix()
        self.update(done)

    def update(self, done: int) -> None:
        with self._lock:
            step, self.done = done - self.done, done
        if self.bar is not None and step > 0:
            self.bar.update(step)

    def snapshot(self) -> dict:
        elapsed = time.monotonic() - self.t0
        fps = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / fps if self.total and fps > 0 else None
        snap = {
            "file": self.label,
            "frames": self.done,
            "total": self.total,
            "fps": round(fps, 3),
            "elapsed_s": round(elapsed, 3),
            "eta_s": None if eta is None else round(max(eta, 0.0), 1),
        }
        if self.segments is not None:
            snap |= {"segments": self.segments_done, "segments_total": self.segments}
        return snap

    def tick(self, force: bool = False) -> None:
        if self.mode != "json":
            return
        now = time.monotonic()
        if force or now - self._last_json >= JSON_INTERVAL_S:
            self._last_json = now
            print(json.dumps(self.snapshot()), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.tick(force=True)


ESTIMATE_FRAMES = 4  # frames after the first over which a run's speed is measured
ESTIMATE_MIN_S = 1.0  # ... and at least this many seconds of them
LONG_RUN_S = 600.0  # a CPU run predicted to take longer than this says so, with a faster choice


class Estimate:
    """The wall time a run will take, measured once on its first frames (the first excluded: it pays
    the warm-up), and one line when that is long on a CPU. Called from the encode thread with the
    frames written so far; costs a clock read per frame (its own time is kept in ``spent``)."""

    def __init__(self, total: int | None, label: str, on_cpu: bool, advice: str) -> None:
        self.total, self.label, self.on_cpu, self.advice = total, label, on_cpu, advice
        self.t0 = time.monotonic()
        self.first: tuple[int, float] | None = None  # (frames, time) when the first frame was written
        self.seconds: float | None = None  # the predicted wall time of the whole run
        self.spent = 0.0

    def __call__(self, done: int) -> None:
        t = time.perf_counter()
        if self.seconds is None and self.total:
            now = time.monotonic()
            if self.first is None:
                self.first = (done, now)
            elif done - self.first[0] >= ESTIMATE_FRAMES and now - self.first[1] >= ESTIMATE_MIN_S:
                rate = (done - self.first[0]) / (now - self.first[1])
                self.seconds = (now - self.t0) + (self.total - done) / rate
                if self.on_cpu and self.seconds > LONG_RUN_S:
                    log.warning("%s: about %.0f min at %.2f fps on this CPU; %s", self.label, self.seconds / 60,
                                rate, self.advice)
        self.spent += time.perf_counter() - t
