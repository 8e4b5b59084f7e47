"""One Ray actor per GPU, on this CPU machine: a local Ray started with two declared GPUs.

Ray cannot travel to the lent GPU machine (its wheel is over the carry limit), so the GPU placement
is tested here: Ray hands each actor its own GPU id and sets CUDA_VISIBLE_DEVICES, while the public
``device cpu`` option makes the actors compute on the CPU. Frames come back in order, identical to the
local executor's; more actors than GPUs are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from media import make_video
from vsr.cli import main
from vsr.config import RunConfig
from vsr.jobs.file import upscale_file
from vsr.jobs.session import open_session
from vsr.media.decode import read_rgb

ray = pytest.importorskip("ray")

LOSSLESS = {"codec": "ffv1", "pix_fmt": "yuv444p"}
BASE = dict(model="bicubic", progress="none", batch=2, **LOSSLESS)


@pytest.fixture(scope="module")
def two_gpus():
    """A local Ray whose only node declares two GPUs (none exist: Ray only schedules them)."""
    assert not ray.is_initialized(), "another module left Ray running"
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gpus") / "clip.mkv"
    make_video(path, n=12, size=(32, 24), audio_start=None, **LOSSLESS)
    return path


def test_one_actor_per_declared_gpu_frames_in_order(two_gpus, clip: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.mkv"
    upscale_file(open_session(RunConfig(executor="local", **BASE)), clip, local)
    out = tmp_path / "ray.mkv"
    with open_session(RunConfig(executor="ray", device="cpu", gpus_per_worker=1, **BASE)) as session:
        infos, kind = session.pool.infos, session.pool.kind
        summary = upscale_file(session, clip, out)
    assert len(infos) == 2 and kind == "2 GPU actor(s)"
    assert sorted(str(i["gpus"][0]) for i in infos) == ["0", "1"]  # distinct GPU ids
    assert sorted(i["cuda_visible_devices"] for i in infos) == ["0", "1"]  # set by Ray, one each
    assert {i["device"] for i in infos} == {"cpu"}  # computing where the option says
    assert len({i["pid"] for i in infos}) == 2
    assert summary.frames == 12
    got, want = read_rgb(out), read_rgb(local)
    assert len(got) == len(want) == 12 and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_more_workers_than_declared_gpus_is_refused(two_gpus, clip: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", str(clip), "-o", str(tmp_path / "x.mkv"), "--executor", "ray", "--device", "cpu",
                 "--gpus-per-worker", "1", "--workers", "3", "--model", "bicubic", "--progress", "none"])
    assert code == 2
    assert "--workers 3: the Ray cluster has 2 GPU(s)" in capsys.readouterr().err
