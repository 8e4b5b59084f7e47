"""Every entry point outside the package still starts: the benchmark scripts, the Ray-job entry point,
the training entry the data script uses, and `python -m vsr`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = sorted((REPO / "benchmarks").glob("*.py"))
SCRIPTS = [str(p.relative_to(REPO)) for p in BENCH if "__main__" in p.read_text()] + ["pipelines/farm.py"]
HELPERS = [p.stem for p in BENCH if "__main__" not in p.read_text()]  # modules the scripts import


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script: str) -> None:
    r = run(script, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize("module", HELPERS)
def test_benchmark_helper_modules_import(module: str) -> None:
    r = run("-c", f"import sys; sys.path.insert(0, 'benchmarks'); import {module}")
    assert r.returncode == 0, r.stderr[-2000:]


def test_module_entry_points() -> None:
    r = run("-m", "vsr", "train", "--help")  # what scripts/get_training_data.sh runs
    assert r.returncode == 0 and "--prepare-data" in r.stdout, r.stderr[-2000:]
    assert "python -m vsr train --prepare-data" in (REPO / "scripts" / "get_training_data.sh").read_text()
    r = run("-m", "vsr", "--version")
    assert r.returncode == 0 and r.stdout.startswith("vsr "), r.stderr


def test_shell_scripts_parse() -> None:
    for script in sorted((REPO / "scripts").glob("*.sh")) + sorted((REPO / "benchmarks").glob("*.sh")):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, (script, r.stderr)
