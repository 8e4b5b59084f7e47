"""Ray executor on real clips: identical to local, every actor and node works, failures lose nothing.

One private Ray started by vsr itself (loopback only, no dashboard), then one two-node
``ray.cluster_utils.Cluster`` shared by the other tests. Clips are tiny (32x32, 20 frames, ffv1,
lossless) and the model is ``bicubic``, so the time goes to starting Ray and the actors.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from media import make_image, make_video
from vsr.cli import main
from vsr.config import RunConfig
from vsr.jobs.session import choose_executor, open_session
from vsr.media.decode import read_rgb
from vsr.jobs.file import upscale_file
from ray_faults import faulty, ray_session
from vsr.errors import ProcessingError
from vsr.executors import ray_frames

ray = pytest.importorskip("ray")

FRAMES = 20  # frames of the test clip
SIZE = (32, 32)  # LR width, height
LOSSLESS = {"codec": "ffv1", "pix_fmt": "yuv444p"}
BASE = dict(model="bicubic", progress="none", batch=2, **LOSSLESS)  # batch 2 → 2 frames per Ray batch
START_TIMEOUT_S = 30.0  # seconds for Ray's processes to go away after a shutdown
KILL_AFTER_S = 0.3  # seconds into a run at which the kill test kills an actor
BATCH_DELAY_S = 0.2  # seconds each actor sleeps per batch in the kill test (so the run lasts)
CRASH_AFTER = 4  # batches a crashing actor finishes per life (10 batches, Ray allows 2 restarts)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "clip.mkv"
    make_video(path, n=FRAMES, size=SIZE, audio_start=None, **LOSSLESS)
    return path


@pytest.fixture(scope="module")
def reference(clip: Path, tmp_path_factory) -> list[np.ndarray]:
    """The local executor's output, decoded: what every Ray run must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref") / "local.mkv"
    summary = upscale_file(open_session(RunConfig(executor="local", **BASE)), clip, out)
    assert summary.note == "" and "actors" not in summary.stats
    frames = read_rgb(out)
    assert len(frames) == FRAMES and frames[0].shape == (SIZE[1] * 4, SIZE[0] * 4, 3)
    return frames


def same(path: Path, reference: list[np.ndarray]) -> bool:
    got = read_rgb(path)
    return len(got) == len(reference) and all(np.array_equal(a, b) for a, b in zip(got, reference))


def _descendants() -> dict[int, str]:
    """pid -> command line of every process below this one (Linux /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [os.getpid()]
    while frontier:
        pid = frontier.pop()
        for child in (c for c, p in parent.items() if p == pid):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            frontier.append(child)
    return found


def _listening(pids: set[int]) -> set[str]:
    """Addresses of the TCP sockets that ``pids`` listen on."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    addrs = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(cols[1].split(":")[0])
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # per-word byte order
                addrs.add(socket.inet_ntop(family, raw))
    return addrs


def _loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def test_choose_executor(monkeypatch) -> None:
    assert choose_executor(RunConfig(executor="local", ray_address="auto")) == "local"
    assert choose_executor(RunConfig(ray_address="auto")) == "ray"
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert choose_executor(RunConfig()) == "local"
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert choose_executor(RunConfig()) == "ray"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_private_ray_loopback_no_dashboard_identical(clip: Path, reference, tmp_path: Path) -> None:
    """vsr starts Ray itself: servers on loopback only, no dashboard; output identical; all gone after."""
    if ray.is_initialized():
        pytest.skip("a Ray connection already exists in this process")
    session = open_session(RunConfig(executor="ray", workers=2, **BASE))
    try:
        assert session.pool is not None and session.pool.started and session.upscaler is None
        procs = _descendants()
        addrs = _listening(set(procs))
        assert addrs and all(_loopback(a) for a in addrs), addrs
        heads = [c for c in procs.values() if "dashboard/dashboard.py" in c]  # Ray's minimal head service
        assert all("--disable-frontend" in c for c in heads), "the dashboard (web UI) is off"
        out = tmp_path / "ray.mkv"
        summary = upscale_file(session, clip, out)
    finally:
        session.close()
    assert same(out, reference)
    stats = summary.stats
    assert stats["actors"] == 2 and sorted(stats["frames_per_actor"]) == ["a0", "a1"]
    assert all(n > 0 for n in stats["frames_per_actor"].values()) and sum(stats["frames_per_actor"].values()) == FRAMES
    assert stats["retries"] == 0 and stats["frames_written"] == FRAMES
    # Backpressure: at most K batches per actor, a bounded reorder window, bounded frames in memory.
    assert 1 <= stats["peak_inflight_per_actor"] <= RunConfig().execution.inflight_per_worker
    assert stats["peak_outstanding"] <= ray_frames.REORDER_SLACK * RunConfig().execution.inflight_per_worker * 2
    assert stats["peak_frames_alive"] <= stats["frame_bound"]
    # Data movement: one uint8 RGB frame each way, plus nothing per frame (arrays, not lists).
    assert stats["bytes_in_per_frame"] == SIZE[0] * SIZE[1] * 3
    assert stats["bytes_out_per_frame"] == SIZE[0] * SIZE[1] * 3 * 16
    assert 0 < stats["dispatch_cpu_s_per_frame"] <= stats["driver_cpu_s_per_frame"]
    assert "2 actor(s)" in summary.note
    assert not ray.is_initialized()
    deadline = time.monotonic() + START_TIMEOUT_S
    while [c for c in _descendants().values() if "ray" in c] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [c for c in _descendants().values() if "ray" in c], "no Ray process outlives the session"


def test_cli_two_nodes_identical(cluster, clip: Path, reference, tmp_path: Path, capsys) -> None:
    """`vsr run` joins the cluster; a video and a 16-bit image go through the same actors."""
    image = tmp_path / "deep.png"
    pixels = make_image(image, size=(20, 18), depth=16)
    local = open_session(RunConfig(executor="local", model="bicubic")).upscaler.upscale([pixels], (80, 72))[0]
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = ["run", str(clip), str(image), "--output-dir", str(outdir), "--model", "bicubic", "--batch", "2",
            "--codec", "ffv1", "--pix-fmt", "yuv444p", "--progress", "none", "--executor", "ray",
            "--workers", "2", "--ray-address", cluster.address]
    assert main(args) == 0
    assert same(outdir / "clip_x4.mkv", reference)
    got = read_rgb(outdir / "deep_x4.png")[0]
    assert got.dtype == np.uint16 and np.array_equal(got, local), "uint16 frames travel unchanged"
    err = capsys.readouterr().err
    line = re.search(r"ray: 2 actor\(s\), 0 retries; frames per actor (.*); per node (.*)", err)
    assert line, err
    per_actor = dict(kv.rsplit(":", 1) for kv in line.group(1).split())
    per_node = dict(kv.rsplit(":", 1) for kv in line.group(2).split())
    assert len(per_actor) == 2 and all(int(n) > 0 for n in per_actor.values())
    assert len(per_node) == 2 and all(int(n) > 0 for n in per_node.values()), "work landed on both nodes"
    assert ray.is_initialized(), "a connection vsr did not make is left open"


def test_crashing_actor_restarted_nothing_lost(cluster, clip: Path, reference, tmp_path: Path, monkeypatch) -> None:
    """One actor whose process dies at its fifth batch, every time: Ray restarts it (model reloaded)
    and the lost batches wait for it, as there is no other actor."""
    out = tmp_path / "crash.mkv"
    session = ray_session(faulty(0, CRASH_AFTER, "exit"), workers=1, **BASE)
    try:
        summary = upscale_file(session, clip, out)
    finally:
        session.close()
    assert same(out, reference)
    assert summary.stats["retries"] >= 1 and summary.stats["frames_per_actor"] == {"a0": FRAMES}


def test_killed_actor_nothing_lost(cluster, clip: Path, reference, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "kill.mkv"
    session = ray_session(faulty(after=10**6, delay_s=BATCH_DELAY_S), workers=2, **BASE)
    assert session.pool is not None
    victim = session.pool.slots[0].handle
    killer = threading.Timer(KILL_AFTER_S, lambda: ray.kill(victim))
    try:
        killer.start()
        summary = upscale_file(session, clip, out)
    finally:
        killer.cancel()
        session.close()
    assert same(out, reference)
    stats = summary.stats
    assert stats["retries"] >= 1 and stats["frames_per_actor"]["a1"] > stats["frames_per_actor"].get("a0", 0)
    assert sum(stats["frames_per_actor"].values()) == FRAMES


def test_retries_exhausted_fails_cleanly(cluster, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.mkv"
    session = ray_session(faulty("*", 0), workers=2, max_retries=1, model="bicubic", progress="none")
    try:
        with pytest.raises(ProcessingError) as e:
            upscale_file(session, clip, out)
    finally:
        session.close()
    msg = str(e.value)  # one line for the CLI to print
    assert "\n" not in msg and "clip.mkv" in msg and "failed 2 times" in msg and "injected fault" in msg, msg
    assert e.value.exit_code == 1
    assert not out.exists() and not list(tmp_path.iterdir()), "nothing at the output path"
