import logging
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep tests away from the user's cache and config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("VSR_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    for key in list(os.environ):
        if key.startswith("VSR_") and key != "VSR_HOME":
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    """A variable-frame-rate H.264 clip whose pts (media.VFR_PTS, ms) are irregular and start late,
    with AAC audio starting at 0.3 s."""
    from fractions import Fraction

    from media import VFR_PTS, make_video, video_frames

    path = tmp_path_factory.mktemp("vfr") / "vfr clip.mp4"
    make_video(path, pts=VFR_PTS, size=(64, 48), audio_start=0.3)
    # The fixture itself must be VFR and start late (PyAV rescales silently when misconfigured).
    assert [t for t, _ in video_frames(path)] == [Fraction(p, 1000) for p in VFR_PTS]
    return path


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine, one CPU each; the driver connects to the head."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("a Ray connection already exists in this process")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False, logging_level=logging.ERROR)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
