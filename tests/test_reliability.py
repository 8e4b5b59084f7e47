"""Bad inputs, interruptions and full disks: a clear line, the right exit code, nothing left behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import decodable_times, make_image, make_video, write_frames
from vsr.cli import main
from vsr.config import RunConfig
from vsr.errors import VsrError
from vsr.jobs.session import open_session
from vsr.jobs.file import upscale_file

CHILD_TIMEOUT_S = 120  # no case may hang: each child is killed past this


def vsr_child(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", *args], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S, **kw)


def one_line(err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in err, err


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small MP4 with its index first (faststart), so a cut in its data leaves it readable."""
    root = tmp_path_factory.mktemp("good")
    make_video(root / "plain.mp4", n=10, size=(32, 32), audio_start=0.0)
    path = root / "clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(root / "plain.mp4"), "-c", "copy",
                    "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path


def corpus(root: Path, good: Path) -> list[tuple[Path, int]]:
    """(input, expected exit code) for inputs that must be refused."""
    data = good.read_bytes()
    cases: list[tuple[Path, int]] = []

    def add(name: str, payload: bytes) -> None:
        p = root / name
        p.write_bytes(payload)
        cases.append((p, 2))

    add("empty.mp4", b"")
    add("notes.mp4", b"just some text, not a video\n" * 20)
    for frac in (0.01, 0.05):  # header cut short
        add(f"cut {int(frac * 100)}.mp4", data[: int(len(data) * frac)])
    audio = root / "audio only.m4a"
    with av.open(str(audio), "w") as out:
        s = out.add_stream("aac", rate=48000)
        s.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        for pk in list(s.encode(frame)) + list(s.encode()):
            out.mux(pk)
    cases.append((audio, 2))
    big = root / "big.png"
    make_image(big, size=(300, 200))
    cases.append((big, 2))  # with --max-pixels below 1200x800
    big_video = root / "big video.mp4"
    make_video(big_video, n=2, size=(400, 300), audio_start=None)
    cases.append((big_video, 2))  # likewise: refused before any frame is upscaled
    return cases


def test_bad_inputs_fail_cleanly(good: Path, tmp_path: Path, capsys) -> None:
    for path, code in corpus(tmp_path, good):
        before = sorted(p.name for p in tmp_path.iterdir())
        assert main(["run", str(path), "--model", "bicubic", "--progress", "none", "--max-pixels", "500000"]) == code
        err = capsys.readouterr().err
        one_line(err, path.name)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, path  # nothing written, no .partial
    assert "500000" in (main(["run", str(tmp_path / "big.png"), "--model", "bicubic", "--max-pixels", "500000"]),
                        capsys.readouterr().err)[1]


def test_truncated_mid_data_and_flipped_bytes_still_write_every_frame(good: Path, tmp_path: Path, capsys) -> None:
    with av.open(str(good)) as c:
        video = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(good.read_bytes())
    for pos, size in video[3:5]:  # wreck two P-frames: the decoder rejects their packets
        for k in range(pos + 4, pos + size):
            data[k] ^= 0x5A
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "damaged_out.mp4"
    assert main(["run", str(damaged), "-o", str(out), "--model", "bicubic", "--progress", "none"]) == 0
    err = capsys.readouterr().err
    assert "damaged input: 2 packet(s) the decoder rejected" in err
    with av.open(str(out)) as c:  # exactly the decodable frames, at their own times: none invented
        got = [f.pts * f.time_base for f in c.decode(c.streams.video[0])]
    assert got == decodable_times(damaged) and len(got) == len(video) - 2
    cut = tmp_path / "cut late.mp4"  # faststart: the index survives, the last frames' data do not
    cut.write_bytes(good.read_bytes()[: video[7][0]])
    out = tmp_path / "cut_out.mp4"
    assert main(["run", str(cut), "-o", str(out), "--model", "bicubic", "--progress", "none"]) == 0
    err = capsys.readouterr().err
    assert "of the 10 frames its container lists could be read" in err  # what can be read is written, and said
    with av.open(str(out)) as c:
        assert 0 < len(list(c.decode(c.streams.video[0]))) < 10


@pytest.mark.parametrize("pix_fmt", ["gray", "rgba", "yuv422p10le", "yuv444p"])
def test_unusual_pixel_formats(tmp_path: Path, pix_fmt: str) -> None:
    ext = ".mov" if pix_fmt == "rgba" else ".mkv"  # PNG-in-MOV for RGBA: FFV1 has no packed RGBA
    src = tmp_path / f"ünïcode dir/clip {pix_fmt}{ext}"
    src.parent.mkdir()
    codec = "png" if pix_fmt == "rgba" else "ffv1"
    frames = [av.VideoFrame.from_ndarray(np.full((17, 33, 3), 40 * i + 20, np.uint8), format="rgb24")
              .reformat(format=pix_fmt) for i in range(3)]
    write_frames(src, frames, codec, pix_fmt)
    dst = tmp_path / "ünïcode dir" / "out put.mkv"
    assert main(["run", str(src), "-o", str(dst), "--model", "bicubic", "--progress", "none"]) == 0
    with av.open(str(dst)) as c:
        frames = list(c.decode(c.streams.video[0]))
        assert len(frames) == 3 and (frames[0].width, frames[0].height) == (132, 68)


def test_tiny_image(tmp_path: Path) -> None:
    src = tmp_path / "dot.png"
    make_image(src, size=(1, 1))
    assert main(["run", str(src), "--model", "lanczos", "--progress", "none"]) == 0
    with av.open(str(tmp_path / "dot_x4.png")) as c:
        assert next(c.decode(video=0)).width == 4


@pytest.fixture
def locked_folder(tmp_path: Path):
    """A folder nobody may write to. Root writes through permission bits, so as root it is a
    read-only tmpfs mount (CI runs as root); otherwise a plain folder with mode 0555."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        os.chmod(locked, 0o555)
        yield locked
        os.chmod(locked, 0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(locked)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"running as root without permission to mount a read-only folder: {r.stderr!r}")
    yield locked
    subprocess.run(["umount", str(locked)], check=True)


def test_unwritable_output_folder_exits_2(good: Path, locked_folder: Path, capsys) -> None:
    assert main(["run", str(good), "-o", str(locked_folder / "out.mp4"), "--model", "bicubic"]) == 2
    err = capsys.readouterr().err
    one_line(err, "locked")
    assert "not writable" in err and list(locked_folder.iterdir()) == []


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("long") / "long.mp4"
    make_video(src, n=400, size=(160, 120), audio_start=0.0)
    return src


def start_run(src: Path, out: Path) -> subprocess.Popen:
    """`vsr run` in a child, slow enough to interrupt; returns once its .partial has data."""
    proc = subprocess.Popen([sys.executable, "-m", "vsr", "run", str(src), "-o", str(out), "--model", "lanczos",
                             "--progress", "none"], stderr=subprocess.PIPE, text=True)
    partial, t0 = out.with_name(out.name + ".partial"), time.monotonic()
    while not (partial.exists() and partial.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() - t0 < 60, "the run never started writing"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_interrupt_removes_partial(long_clip: Path, tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "out.mp4"
    proc = start_run(long_clip, out)
    t0 = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == code, err
    assert time.monotonic() - t0 < 10, "the handler runs promptly: the model is off the main thread"
    one_line(err, "interrupted")
    assert "long.mp4" in err  # names the file
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_second_ctrl_c_exits_at_once(long_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    proc = start_run(long_clip, out)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # two signals sent at once may merge into one; give the first its handler run
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 130 and time.monotonic() - t0 < 3
    assert not out.exists()


def test_disk_full_during_encode(long_clip: Path, tmp_path: Path) -> None:
    src = long_clip
    out = tmp_path / "out.mkv"
    limit = 100_000  # bytes: far below the output's size

    def small_disk() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "vsr", "run", str(src), "-o", str(out), "--model", "bicubic",
                        "--progress", "none", "--crf", "0", "--preset", "ultrafast"], capture_output=True, text=True,
                       timeout=CHILD_TIMEOUT_S, preexec_fn=small_disk)
    assert r.returncode == 1, r.stderr
    one_line(r.stderr, "out.mkv")
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_input_is_never_modified(good: Path, tmp_path: Path) -> None:
    digest, mtime = hashlib.sha256(good.read_bytes()).hexdigest(), good.stat().st_mtime_ns
    assert main(["run", str(good), "-o", str(tmp_path / "o.mp4"), "--model", "bicubic", "--progress", "none"]) == 0
    assert main(["run", str(good), "-o", str(good), "--model", "bicubic", "--overwrite", "--progress", "none"]) == 2
    assert hashlib.sha256(good.read_bytes()).hexdigest() == digest and good.stat().st_mtime_ns == mtime


def test_corrupt_weights_exit_3_naming_the_file(good: Path, tmp_path: Path, capsys) -> None:
    from vsr.models.compact import SHIPPED_WEIGHTS

    bad = tmp_path / "compact.safetensors"
    bad.write_bytes(SHIPPED_WEIGHTS.read_bytes()[:1000] if SHIPPED_WEIGHTS.is_file() else b"\x00" * 1000)
    assert main(["run", str(good), "-o", str(tmp_path / "o.mp4"), "--model", "compact", "--weights", str(bad)]) == 3
    one_line(capsys.readouterr().err, "compact.safetensors")
    assert not (tmp_path / "o.mp4").exists()


@pytest.fixture(scope="module")
def fuzz_session():
    return open_session(RunConfig(model="bicubic", progress="none", quiet=True, preset="ultrafast"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_clips(good: Path, fuzz_session, tmp_path_factory, data) -> None:
    """Mutated copies of a valid clip: success with a complete output, or a VsrError; never a crash,
    never another exception, never anything at the output path after a failure."""
    clip = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(clip) - 1))
        clip[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        clip = clip[: data.draw(st.integers(0, len(clip)))]
    root = tmp_path_factory.mktemp("fuzz")
    src, dst = root / "in.mp4", root / "out.mkv"
    src.write_bytes(bytes(clip))
    try:
        summary = upscale_file(fuzz_session, src, dst)
    except VsrError as e:
        assert e.exit_code in (1, 2) and str(src) in str(e)
        assert sorted(p.name for p in root.iterdir()) == ["in.mp4"]
    else:
        assert dst.is_file() and summary.frames >= 1
        with av.open(str(dst)) as c:
            assert len(list(c.decode(c.streams.video[0]))) == summary.frames


def test_interrupt_while_threads_start_waits_for_the_decoder(monkeypatch) -> None:
    """A signal that lands while the executor starts its threads (a split run's next segment starting
    as a SIGHUP arrives) must not return while the decode thread is still inside the reader: the
    caller closes the reader next, and PyAV crashed (SIGSEGV, about 1 run in 4 of the hangup test)."""
    import threading

    from vsr.errors import Interrupted
    from vsr.executors import local
    from vsr.media.frame import Frame

    inside = threading.Event()

    def frames():
        for i in range(50):
            inside.set()
            time.sleep(0.05)  # a slow decode: the reader is in use
            inside.clear()
            yield Frame(i, i, 1, None, np.zeros((8, 8, 3), np.uint8))

    class StartThenInterrupt(threading.Thread):
        started = 0

        def start(self) -> None:
            super().start()
            StartThenInterrupt.started += 1
            if StartThenInterrupt.started == 1:  # the decode thread runs; the signal lands now
                while not inside.is_set():
                    time.sleep(0.001)
                raise Interrupted("interrupted by SIGHUP", signal.SIGHUP)

    monkeypatch.setattr(local.threading, "Thread", StartThenInterrupt)

    class Never:
        def upscale(self, images, size):
            raise AssertionError("no frame reaches the model before the threads started")

    with pytest.raises(Interrupted):
        local.LocalExecutor(Never(), (8, 8)).run(frames(), sink=None)
    assert not inside.is_set(), "run() returned while the decode thread was still reading"
