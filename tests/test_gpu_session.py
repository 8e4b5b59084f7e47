"""The prepared GPU session script, rehearsed on the CPU the way the lent machine will run it: python3,
the repo on PYTHONPATH, and `import ray` (also decord, diffusers) failing as it does there."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("env", "adcsr", "groupnorm", "tiles", "bench", "compile")
FILES = {f"{s}.jsonl" for s in STEPS} | {"cuda_tests.txt", "summary.txt"}


def test_gpu_session_smoke_runs_every_step_without_ray(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    for name in ("ray", "decord", "diffusers"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the lent GPU machine')\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh", "--smoke", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == FILES  # 8 files: the device tool brings back at most 8
    for step in STEPS:
        rows = [json.loads(line) for line in (out / f"{step}.jsonl").read_text().splitlines()]
        assert rows, step
        assert not [r for r in rows if "error" in r], (step, rows)
    env_row = json.loads((out / "env.jsonl").read_text().splitlines()[0])
    assert env_row["ray"] is None and env_row["torch"]  # the blocker worked; the step still ran
    summary = (out / "summary.txt").read_text()
    assert "env=0 cuda_tests=0 adcsr=0 groupnorm=0 tiles=0 bench=0 compile=0" in summary
    assert "skipped" in (out / "cuda_tests.txt").read_text()  # no CUDA here: collected, then skipped
