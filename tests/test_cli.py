"""Errors and exit codes, atomic output, config precedence, probe, bounded memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from torch import nn

from media import make_video
from vsr.cli import main
from vsr.config import RunConfig
from fakes import fake_spec
from vsr.models import MODELS, classic
from vsr.jobs.session import open_session
from vsr.jobs.file import upscale_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_video(path, n=6, size=(32, 32), audio_start=0.0)
    return path


def vsr_cli(*args: str) -> subprocess.CompletedProcess:
    """The real command in a child process: exit code and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "vsr", *args], capture_output=True, text=True, timeout=120)


def test_errors_exit_2_with_one_line_naming_the_file(clip: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("hello, not a video")
    exists = tmp_path / "exists.mp4"
    exists.write_bytes(b"x")
    cases = [
        ([str(missing)], "nope.mp4", "no such file"),
        ([str(text)], "notes.mp4", "not a readable video"),
        ([str(clip), "--model", "nosuchmodel"], "nosuchmodel", "choose one of"),
        ([str(clip), "-o", str(clip)], "clip.mp4", "may not be the input"),
        ([str(clip), "-o", str(exists)], "exists.mp4", "--overwrite"),
        ([str(clip), "--scale", "5"], "--scale 5", "a ×4 model; use 4 or less"),
        ([str(clip), "-o", str(tmp_path / "x.xyz")], "x.xyz", "unknown video container"),
    ]
    for args, name, why in cases:
        model = [] if "--model" in args else ["--model", "bicubic"]
        assert main(["run", *args, *model]) == 2, args
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and why in lines[0], (args, err)
    assert exists.read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.mp4", "notes.mp4"]
    # The same as a user sees it from a shell: exit code, one line, no traceback unless --debug.
    r = vsr_cli("run", str(text), "--model", "bicubic")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "notes.mp4" in r.stderr
    assert "Traceback" not in r.stderr
    r = vsr_cli("run", str(missing), "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr


class Exploding(nn.Module):
    """A model that fails on its third call: a runtime failure in the middle of a run."""

    scale, multiple = 4, 1

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom in the model")
        return nn.functional.interpolate(x, scale_factor=4)


class Slow(classic.Bicubic):
    def forward(self, x):
        time.sleep(0.01)
        return super().forward(x)


@pytest.fixture
def extra_models(monkeypatch):
    for name, cls in [("exploding", Exploding), ("slow", Slow)]:
        monkeypatch.setitem(MODELS, name, fake_spec(name, cls))


def test_failure_mid_run_leaves_nothing(extra_models, clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    assert main(["run", str(clip), "-o", str(out), "--model", "exploding", "--progress", "none",
                 "--tile", "0", "--batch", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "boom in the model" in err[0]
    assert list(tmp_path.iterdir()) == []  # neither the output nor its .partial


def test_frames_alive_are_bounded(extra_models, tmp_path: Path) -> None:
    src = tmp_path / "long.mp4"
    make_video(src, n=120, size=(32, 24), audio_start=None)
    config = RunConfig(model="slow", queue_size=2, progress="none", tile=0, batch=1)
    summary = upscale_file(open_session(config), src, tmp_path / "out.mkv")
    assert summary.frames == 120
    peak, bound = summary.stats["peak_frames_alive"], summary.stats["frame_bound"]
    assert 2 <= peak <= bound < 20, (peak, bound)  # bounded by the queues, far below the video's 120


def test_config_precedence(tmp_path: Path, monkeypatch, capsys) -> None:
    user = tmp_path / "config" / "vsr" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("crf: 20\npreset: slow\ntile: 64\nbatch: 3\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: fast\ntile: 96\nbatch: 5\n")
    monkeypatch.setenv("VSR_TILE", "128")
    monkeypatch.setenv("VSR_BATCH", "6")
    assert main(["run", "in.mp4", "--config", str(cfg), "--batch", "7", "--print-config"]) == 0
    got = yaml.safe_load(capsys.readouterr().out)
    # default (color_fix auto: compact's adain) < user (crf) < --config (preset) < VSR_* (tile) < flags (batch)
    assert (got["color_fix"], got["crf"], got["preset"], got["tile"], got["batch"]) == ("adain", 20, "fast", 128, 7)
    for preset in ("archive", "prores", "web", "hevc", "av1"):  # shipped presets load by name
        assert main(["run", "in.mp4", "--config", preset, "--print-config"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["codec"] in ("ffv1", "prores_ks", "libx264", "libx265", "libsvtav1")
    cfg.write_text("tiles: 3\n")
    assert main(["run", "in.mp4", "--config", str(cfg), "--print-config"]) == 2
    assert "unknown option(s) tiles" in capsys.readouterr().err


def test_probe_text_and_json(clip: Path, capsys) -> None:
    assert main(["probe", str(clip)]) == 0
    text = capsys.readouterr().out
    assert "video: h264, 32x32 yuv420p (8-bit 420)" in text and "25.000 fps" in text and "audio: aac" in text
    assert "progressive" in text and "colour" in text
    assert main(["probe", str(clip), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    video = info["streams"][0]
    assert (video["type"], video["width"], video["frames"], video["frame_rate"]) == ("video", 32, 6, "25")
    assert (video["chroma"], video["field_order"], video["rotation"]) == ("420", "progressive", 0)
    assert info["streams"][1]["type"] == "audio" and info["duration"] > 0
    assert main(["probe", str(clip.parent / "missing.mp4")]) == 2


def test_console_script() -> None:
    exe = shutil.which("vsr")
    assert exe is not None, "pip install puts a `vsr` command on PATH"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("vsr ")


def test_one_writer_per_output(clip: Path, tmp_path: Path, capsys) -> None:
    """A second run on an output that a run is writing is refused (exit 2); a lock left by a killed
    run does not block the next one. The test holds the lock itself rather than racing two runs."""
    from vsr.jobs.lock import OutputLock, lock_path

    out = tmp_path / "out.mkv"
    with OutputLock(out):
        assert main(["run", str(clip), "-o", str(out), "--model", "bicubic", "--progress", "none"]) == 2
        err = capsys.readouterr().err
        assert "another run is writing this output" in err and not out.exists()
        assert not out.with_name(out.name + ".partial").exists()
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from pathlib import Path
from vsr.jobs.lock import OutputLock
OutputLock(Path({str(out)!r})).acquire()
print("locked", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", str(clip), "-o", str(out), "--model", "bicubic", "--progress", "none"]) == 2
        holder.kill()  # SIGKILL: no cleanup ran, the lock file stays
        holder.wait(10)
        assert lock_path(out).exists()
        assert main(["run", str(clip), "-o", str(out), "--model", "bicubic", "--progress", "none"]) == 0
        assert out.is_file() and not lock_path(out).exists()
    finally:
        holder.kill()
    split = tmp_path / "split.mkv"  # a split run's segment work directory is locked too
    work = split.parent / f".{split.name}.vsr-work"
    with OutputLock(work, "segment work directory"):
        assert main(["run", str(clip), "-o", str(split), "--model", "bicubic", "--progress", "none",
                     "--segment-seconds", "0.1"]) == 2
        assert "another run is writing this segment work directory" in capsys.readouterr().err
