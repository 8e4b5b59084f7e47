"""Small hostile inputs cost bounded work: a 1 KB YAML config whose aliases expand to billions of
nodes, and compact weights whose metadata asks for millions of layers, each end with exit 2/3 and a
clear message in a child process allowed about 1 GiB of memory beyond what importing vsr takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from media import make_video
from vsr.models import compact

HEADROOM = 1 << 30  # bytes of address space the child may grow by after its imports
CHILD = """
import resource, sys
import vsr.cli
vsz = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vsz + {headroom}, vsz + {headroom}))
sys.exit(vsr.cli.main(sys.argv[1:]))
"""


def limited(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD.format(headroom=HEADROOM), *argv], capture_output=True,
                          text=True, timeout=180)


def alias_bomb(key: str, depth: int = 9) -> str:
    """YAML of about 1 KB under ``key`` whose aliases expand to 9**depth items."""
    lines = [f"{key}:", '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, depth):
        refs = ", ".join([f"*l{i - 1}"] * 9)
        lines.append(f"  - &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("limits") / "clip.mp4"
    make_video(path, n=2, size=(32, 32), audio_start=None)
    return path


@pytest.mark.parametrize("key", ["codec", "encoder_opt"])
def test_yaml_alias_bomb_is_refused_cheaply(key: str, clip: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(key))
    assert bomb.stat().st_size < 1200
    r = limited("run", str(clip), "--config", str(bomb), "--model", "bicubic", "--progress", "none")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "expands to more than" in r.stderr and "bomb.yaml" in r.stderr and "Traceback" not in r.stderr


def write_compact(path: Path, config: dict) -> None:
    model = compact.Compact()
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={compact.CONFIG_METADATA_KEY: json.dumps(config)})


@pytest.mark.parametrize("config, why", [
    ({"num_conv": 3_000_000}, "num_conv: a whole number from 0 to 64"),
    ({"num_feat": 10**9}, "num_feat: a whole number from 1 to 512"),
    ({"num_conv": "eight"}, "num_conv: a whole number"),
    ({"base": ["bicubic"]}, "base: nearest or bicubic"),
])
def test_compact_metadata_is_checked_before_allocating(config: dict, why: str, clip: Path, tmp_path: Path) -> None:
    weights = tmp_path / "huge.safetensors"
    write_compact(weights, config)
    r = limited("run", str(clip), "--model", "compact", "--weights", str(weights), "--progress", "none")
    assert r.returncode == 3, r.stderr[-2000:]
    assert why in r.stderr and "huge.safetensors" in r.stderr and "Traceback" not in r.stderr


def test_the_limit_is_real(tmp_path: Path) -> None:
    """The child really fails when it needs more than its headroom (so the tests above mean something)."""
    r = subprocess.run([sys.executable, "-c", CHILD.format(headroom=HEADROOM).replace(
        "sys.exit(vsr.cli.main(sys.argv[1:]))", "import torch; torch.empty(2 << 30, dtype=torch.uint8).fill_(1)")],
        capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and ("MemoryError" in r.stderr or "memory" in r.stderr.lower())
    assert torch.empty(0) is not None
