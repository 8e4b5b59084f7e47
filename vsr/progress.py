"""Progress on stderr: a tqdm bar, one JSON line per second (farms, scripts), or nothing."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from tqdm import tqdm

from vsr.errors import UsageError

MODES = ("bar", "json", "none")
JSON_INTERVAL_S = 1.0  # seconds between JSON progress lines


class Progress:
    """Thread-safe: ``update`` may be called from the encode thread, ``tick``/``close`` from main."""

    def __init__(self, mode: str, total: int | None, label: str, stream: TextIO | None = None) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown progress mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode, self.total, self.label = mode, total, label
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self._last_json = 0.0
        self._lock = threading.Lock()
        self.bar = None
        if mode == "bar":
            self.bar = tqdm(total=total, desc=label, unit="frame", file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, done: int) -> None:
        with self._lock:
            step, self.done = done - self.done, done
        if self.bar is not None and step > 0:
            self.bar.update(step)

    def snapshot(self) -> dict:
        elapsed = time.monotonic() - self.t0
        fps = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / fps if self.total and fps > 0 else None
        return {
            "file": self.label,
            "frames": self.done,
            "total": self.total,
            "fps": round(fps, 3),
            "elapsed_s": round(elapsed, 3),
            "eta_s": None if eta is None else round(max(eta, 0.0), 1),
        }

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
