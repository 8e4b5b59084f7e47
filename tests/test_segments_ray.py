"""Split runs on Ray actors over the two-node test cluster: segments made on both nodes, their bytes
back through the object store or written to a shared --work-dir, a crashing actor's segment redone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media import OPEN_GOP, make_video, packets, video_frames, with_subtitles
from vsr.config import RunConfig
from vsr.jobs.session import open_session
from vsr.media.decode import read_rgb
from vsr.jobs.file import upscale_file
from ray_faults import faulty, ray_session
from vsr.errors import ProcessingError

FRAMES = 60
SEGMENTS = 6  # 0.3 s segments of a 25 fps clip with a keyframe every 10 frames
BASE = dict(model="bicubic", progress="none", encoder_opt=["crf=0"], segment_seconds=0.3)  # lossless x264


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("segray")
    make_video(d / "base.mp4", n=FRAMES, size=(48, 32), rate=25, audio_start=0.0, options=OPEN_GOP)
    return with_subtitles(d / "base.mp4", d / "clip.mkv")


@pytest.fixture(scope="module")
def reference(clip: Path, tmp_path_factory) -> list[np.ndarray]:
    """A streamed local run (no segments): what every split Ray run must reproduce exactly."""
    out = tmp_path_factory.mktemp("segref") / "ref.mkv"
    config = {**BASE, "segment_seconds": None}
    upscale_file(open_session(RunConfig(executor="local", **config)), clip, out)
    return read_rgb(out)


def split_run(clip: Path, out: Path, actor_class: type | None = None, **kw) -> dict:
    options = {**BASE, **kw}
    session = (ray_session(actor_class, workers=2, **options) if actor_class is not None
               else open_session(RunConfig(executor="ray", workers=2, **options)))
    try:
        summary = upscale_file(session, clip, out)
    finally:
        session.close()
    assert [f for f, _ in video_frames(out)] == [f for f, _ in video_frames(clip)], "every frame once, input pts"
    assert packets(out, "audio") == packets(clip, "audio") and packets(out, "subtitles") == packets(clip, "subtitles")
    return {**summary.stats, "note": summary.note}


def same(path: Path, reference: list[np.ndarray]) -> bool:
    got = read_rgb(path)
    return len(got) == len(reference) and all(np.array_equal(a, b) for a, b in zip(got, reference))


def test_segments_on_both_nodes_through_object_store(cluster, clip: Path, reference, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    stats = split_run(clip, out)
    assert same(out, reference)
    assert stats["segments"] == SEGMENTS and stats["via_object_store"] == SEGMENTS, "no shared dir: bytes via Ray"
    per_node = stats["note"].split("segments per node ")[1]
    assert per_node.count(":") == 2, f"both nodes made segments: {per_node}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]


def test_segments_in_shared_work_dir(cluster, clip: Path, reference, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    out = tmp_path / "out.mkv"
    stats = split_run(clip, out, work_dir=str(shared))
    assert same(out, reference)
    assert stats["segments"] == SEGMENTS and stats["via_object_store"] == 0, "actors wrote to the shared dir"
    assert not any(shared.iterdir()), "the shared work directory is cleaned up after the join"


def test_crashing_actor_segment_redone(cluster, clip: Path, reference, tmp_path: Path) -> None:
    """Actor 0's process dies at its second segment; that segment is made again elsewhere."""
    out = tmp_path / "out.mkv"
    stats = split_run(clip, out, faulty(0, 1, "exit"))
    assert same(out, reference)
    assert stats["retries"] >= 1 and stats["segments"] == SEGMENTS


def test_a_run_whose_workers_die_says_the_segments_are_kept(cluster, clip: Path, tmp_path: Path) -> None:
    """Every actor process dies after its first segment (as when their node goes down): the run fails,
    and its message says the finished segments are kept and resume continues."""
    out = tmp_path / "out.mkv"
    session = ray_session(faulty("*", 1, "exit"), workers=2, max_retries=0, **BASE)
    try:
        with pytest.raises(ProcessingError) as e:
            upscale_file(session, clip, out)
    finally:
        session.close()
    msg = str(e.value)
    assert "segment(s) are kept in" in msg and "resume" in msg and "clip.mkv" in msg, msg
    assert not out.exists()
