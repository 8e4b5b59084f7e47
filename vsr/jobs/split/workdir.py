"""The work directory of a split run: finished segments (``seg_NNNNN<ext>``) with a record each
(frames, size, sha256), and ``plan.json``, the fingerprint of the input and settings the segments
were made with, which guards ``resume`` against a changed input or settings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from vsr.errors import UsageError
from vsr.jobs.lock import OutputLock
from vsr.jobs.split.plan import Segment
from vsr.jobs.split.worker import SegmentResult, file_sha256
from vsr.version import __version__

log = logging.getLogger("vsr")

WORK_SUFFIX = ".vsr-work"  # the work directory of output X is .X.vsr-work beside it (or under work_dir)
PLAN_FILE = "plan.json"  # input fingerprint, settings and segment bounds of the run the folder belongs to
# Settings that do not change a segment's bytes: a resumed run may differ in these.
NOT_IN_FINGERPRINT = frozenset({
    "progress", "quiet", "overwrite", "skip_existing", "executor", "workers", "gpus_per_worker", "ray_address",
    "inflight_per_worker", "max_retries", "queue_size", "threads", "resume", "work_dir", "audio",
    "subtitles", "device", "compile", "cuda_graphs", "max_pixels",
})


def work_dir_for(dst: Path, shared: str | Path | None) -> Path:
    """``.<output name>.vsr-work`` beside the output, or under ``shared`` (named with a hash of the
    output's absolute path, so the outputs of a farm never share one)."""
    if shared is None:
        return dst.parent / f".{dst.name}{WORK_SUFFIX}"
    digest = hashlib.sha256(str(dst.resolve()).encode()).hexdigest()[:10]
    return Path(shared) / f"{dst.name}-{digest}{WORK_SUFFIX}"


def fingerprint(src: Path, config: dict, model: str, weights_hash: str | None, segments: list[Segment]) -> dict:
    """What a resumed run must share with the run that made the folder for its segments to be reused."""
    st = src.stat()
    return {
        "vsr": __version__,
        "input": str(src.resolve()),
        "input_bytes": st.st_size,
        "input_mtime_ns": st.st_mtime_ns,
        "model": model,
        "weights": weights_hash,
        "settings": {k: v for k, v in sorted(config.items()) if k not in NOT_IN_FINGERPRINT},
        "segments": [[s.start_pts, s.end_pts, s.frames] for s in segments],
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a kill leaves the old record or the new one, never half of one


class WorkDir:
    """The segments of one output: ``seg_NNNNN<ext>`` files and their ``.json`` records, plus the plan."""

    def __init__(self, path: Path, plan: dict, ext: str, resume: bool, overwrite: bool) -> None:
        self.path, self.ext = path, ext
        self.lock = OutputLock(path, "segment work directory").acquire()
        try:
            self._open(plan, resume, overwrite)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, plan: dict, resume: bool, overwrite: bool) -> None:
        path = self.path
        plan_file = path / PLAN_FILE
        plan = json.loads(json.dumps(plan, default=str))  # as it reads back from plan.json
        if path.exists():
            old = None
            try:
                old = json.loads(plan_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
            if not isinstance(old, dict):  # missing or damaged (any JSON of the wrong shape): start over
                if old is not None or plan_file.exists():
                    log.warning("%s: its %s is damaged; the segments are made again", path, PLAN_FILE)
                old = None
            if not resume and not overwrite:
                raise UsageError(f"{path}: holds the segments of an unfinished run; use `resume` to continue it "
                                 f"or `overwrite` to start over")
            if resume and old is not None and old != plan:
                changed = sorted(k for k in plan if old.get(k) != plan[k])
                if not overwrite:
                    raise UsageError(f"{path}: was made for a different input or settings ({', '.join(changed)} "
                                     f"changed); use `overwrite` to start over")
                resume = False
            if not resume or old is None:
                shutil.rmtree(path, ignore_errors=True)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{path}: cannot create the work directory ({e.strerror})") from e
        if not plan_file.exists():
            _write_json(plan_file, plan)
        for stale in path.glob("*.partial"):  # a segment a killed worker was writing
            stale.unlink(missing_ok=True)

    def segment_path(self, index: int) -> Path:
        return self.path / f"seg_{index:05d}{self.ext}"

    def record(self, result: SegmentResult) -> None:
        data = {k: v for k, v in asdict(result).items() if k != "data"}
        _write_json(self.segment_path(result.index).with_suffix(".json"), data)

    def finished(self, count: int) -> dict[int, dict]:
        """Records of segments whose file is there and matches its checksum; others are removed."""
        done = {}
        for i in range(count):
            rec_path = self.segment_path(i).with_suffix(".json")
            if not rec_path.exists():
                continue
            seg = self.segment_path(i)
            try:
                rec = json.loads(rec_path.read_text(encoding="utf-8"))
                ok = (isinstance(rec, dict) and isinstance(rec.get("nbytes"), int) and isinstance(rec.get("frames"), int)
                      and isinstance(rec.get("sha256"), str) and seg.stat().st_size == rec["nbytes"]
                      and file_sha256(seg) == rec["sha256"])
            except (OSError, ValueError):
                ok = False
            if ok:
                done[i] = rec
            else:
                log.warning("%s: segment %d fails its checksum or is missing; it will be redone", self.path, i)
                rec_path.unlink(missing_ok=True)
                seg.unlink(missing_ok=True)
        return done

    def remove(self) -> None:
        """Remove the folder (the output is complete) and release it."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.close()

    def close(self) -> None:
        """Release the folder for another run (its segments stay for a resume)."""
        self.lock.release()


