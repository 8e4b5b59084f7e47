"""Farm mode (`vsr farm`, pipelines/farm.py): many videos in segments on Ray actors, a failed file
does not stop the others, a rerun skips what is done; and the job runs under `ray job submit`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from media import OPEN_GOP, make_video, video_frames
from vsr.errors import UsageError
from vsr.jobs.farm import read_manifest

ROOT = Path(__file__).resolve().parents[1]
FARM = ROOT / "pipelines" / "farm.py"
JOB_TIMEOUT_S = 240  # seconds for the submitted job (Ray start inside it included)


def test_manifest(tmp_path: Path) -> None:
    m = tmp_path / "list.tsv"
    m.write_text("# films\na.mp4\n\nsub/b.mkv\tout/b_big.mkv\n")
    assert read_manifest(m) == [(tmp_path / "a.mp4", None), (tmp_path / "sub/b.mkv", tmp_path / "out/b_big.mkv")]
    m.write_text("a.mp4\tb.mkv\tc.mkv\n")
    with pytest.raises(UsageError, match="list.tsv:1"):
        read_manifest(m)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("farm")
    a, b = d / "a.mp4", d / "b.mkv"
    make_video(a, n=40, size=(48, 32), rate=25, options=OPEN_GOP)
    make_video(b, n=30, size=(40, 24), rate=25, audio_start=None, options=OPEN_GOP)
    broken = d / "broken.mp4"
    broken.write_text("not a video")
    return {"a": a, "b": b, "broken": broken}


def farm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FARM), *map(str, args), "--model", "bicubic", "--progress", "none",
                           "--workers", "2"], capture_output=True, text=True, timeout=JOB_TIMEOUT_S)


def test_farm_runs_many_files_and_skips_done_ones(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "list.tsv"
    manifest.write_text(f"{clips['b']}\t{out / 'b_custom.mkv'}\n{clips['broken']}\n")
    summary = tmp_path / "summary.json"
    r = farm(clips["a"], "--manifest", manifest, "--output-dir", out, "--segment-seconds", "0.3",
             "--summary-json", summary)
    assert r.returncode == 2, r.stderr  # the broken input's exit code; the others are done
    rows = {Path(x["input"]).name: x for x in json.loads(summary.read_text())}
    assert rows["a.mp4"]["status"] == "done" and rows["a.mp4"]["frames"] == 40 and rows["a.mp4"]["segments"] == 4
    assert rows["b.mkv"]["status"] == "done" and rows["b.mkv"]["frames"] == 30
    assert rows["broken.mp4"]["status"] == "failed" and "broken.mp4" in rows["broken.mp4"]["error"]
    assert "2 done, 0 skipped, 1 failed" in r.stdout
    assert video_frames(out / "a_x4.mp4") == video_frames(clips["a"])
    assert [t for t, _ in video_frames(out / "b_custom.mkv")] == [t for t, _ in video_frames(clips["b"])]
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.mp4", "b_custom.mkv"], "no work directory left"

    again = farm(clips["a"], "--manifest", manifest, "--output-dir", out, "--segment-seconds", "0.3")
    assert "0 done, 2 skipped, 1 failed" in again.stdout, again.stdout


# ------------------------------------------------------------------------------- ray job submit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None,
                    reason="`ray job submit` needs ray[default] (pip install -e '.[test]' installs it)")
def test_ray_job_submit_runs_the_farm(clips: dict[str, Path], tmp_path: Path) -> None:
    """A loopback-only Ray head with its job server (token auth, private temp dir and ports), the
    farm submitted as a job: it joins that cluster through RAY_ADDRESS and writes the output."""
    ports = {k: _free_port() for k in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                        "ray-client-server-port")}
    token = tmp_path / "token"
    token.write_text(os.urandom(32).hex())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    args = [f"--{k}={v}" for k, v in ports.items()]
    temp = tempfile.mkdtemp(prefix="vsr-ray-")  # short: Ray's socket paths live under it (107-byte limit)
    log = tmp_path / "head.log"
    head = subprocess.Popen(["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--dashboard-host", "127.0.0.1", "--num-cpus", "2", "--disable-usage-stats",
                             "--temp-dir", temp, *args],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(url + "/api/version", timeout=1)
                break
            except urllib.error.HTTPError:  # 401 without the token: the server is up
                break
            except OSError:
                assert head.poll() is None and time.monotonic() - t0 < 60, log.read_text()[-2000:]
                time.sleep(0.2)
        job = subprocess.run(["ray", "job", "submit", "--address", url, "--", sys.executable, str(FARM),
                              str(clips["a"]), "--output-dir", str(tmp_path), "--model", "bicubic", "--segment-seconds", "0.3", "--workers", "1",
                              "--progress", "none"],
                             env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
        assert job.returncode == 0, job.stdout + job.stderr
        assert "1 done, 0 skipped, 0 failed" in job.stdout
        assert video_frames(tmp_path / "a_x4.mp4") == video_frames(clips["a"])
    finally:
        head.terminate()
        try:
            head.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
