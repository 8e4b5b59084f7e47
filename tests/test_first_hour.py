"""What a new user hits in the first hour, through the CLI as they would: reruns over a folder or a glob,
output folders, playable defaults, options that mislead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import yaml

from media import make_image, make_video
from vsr.cli import main

FAST = ["--model", "bicubic", "--preset", "ultrafast", "--progress", "none"]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_globs_and_folders_skip_vsrs_own_outputs(tmp_path: Path, capsys) -> None:
    g = tmp_path / "g"
    g.mkdir()
    make_video(g / "a.mp4", n=3, size=(32, 24), audio_start=None)
    make_video(g / "b.mp4", n=3, size=(32, 24), audio_start=None)
    assert main(["run", str(g / "*.mp4"), *FAST]) == 0
    assert names(g) == ["a.mp4", "a_x4.mp4", "b.mp4", "b_x4.mp4"]
    capsys.readouterr()
    assert main(["run", str(g / "*.mp4"), *FAST, "--overwrite"]) == 0  # the rerun: no a_x4_x4.mp4
    err = capsys.readouterr().err
    assert names(g) == ["a.mp4", "a_x4.mp4", "b.mp4", "b_x4.mp4"] and "skipped 2 file(s) vsr made" in err
    renamed = g / "holiday.mp4"  # a vsr output renamed: its provenance tag still tells
    (g / "a_x4.mp4").rename(renamed)
    assert main(["run", str(g / "*.mp4"), *FAST, "--overwrite"]) == 0
    assert "holiday.mp4" in capsys.readouterr().err and not (g / "holiday_x4.mp4").exists()
    assert main(["run", str(g / "b_x4.mp4"), *FAST]) == 0  # named directly: upscaled again, as asked
    assert (g / "b_x4_x4.mp4").is_file()


def test_a_folder_of_frames_gets_a_sibling_output_folder(tmp_path: Path) -> None:
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i in range(3):
        make_image(pngs / f"f{i}.png", size=(20, 16))
    assert main(["run", str(pngs), *FAST]) == 0
    assert names(pngs) == ["f0.png", "f1.png", "f2.png"], "nothing written into the input folder"
    assert names(tmp_path / "pngs_x4") == ["f0_x4.png", "f1_x4.png", "f2_x4.png"]
    assert main(["run", str(pngs), "--fps", "30", *FAST]) == 0  # then read as one clip: still one size
    with av.open(str(tmp_path / "pngs_x4.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3


def test_output_folders_are_created(tmp_path: Path) -> None:
    src = tmp_path / "c.mp4"
    make_video(src, n=3, size=(32, 24), audio_start=None)
    assert main(["run", str(src), "--output-dir", str(tmp_path / "new" / "deep"), *FAST]) == 0
    assert (tmp_path / "new" / "deep" / "c_x4.mp4").is_file()
    assert main(["run", str(src), "-o", str(tmp_path / "frames" / "f_%04d.png"), *FAST]) == 0
    assert names(tmp_path / "frames") == ["f_0001.png", "f_0002.png", "f_0003.png"]


def test_rgb_frames_become_playable_h264(tmp_path: Path) -> None:
    pngs = tmp_path / "scan"
    pngs.mkdir()
    for i in range(3):
        make_image(pngs / f"s_{i:03d}.png", size=(20, 16))
    out = tmp_path / "scan.mp4"
    assert main(["run", str(pngs / "s_%03d.png"), "-o", str(out), *FAST]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].format.name == "yuv420p"
    assert main(["run", str(pngs / "s_%03d.png"), "-o", str(tmp_path / "keep.mkv"), *FAST, "--pix-fmt", "yuv444p"]) == 0
    with av.open(str(tmp_path / "keep.mkv")) as c:
        assert c.streams.video[0].format.name == "yuv444p"


def test_webm_picks_vp9_and_opus(tmp_path: Path, capsys) -> None:
    src = tmp_path / "c.mp4"
    make_video(src, n=3, size=(32, 24), audio_start=0.0)  # AAC audio: WebM cannot hold it
    out = tmp_path / "c.webm"
    assert main(["run", str(src), "-o", str(out), *FAST, "--encoder-opt", "deadline=realtime",
                 "--encoder-opt", "cpu-used=8"]) == 0
    assert "converting to Opus" in capsys.readouterr().err
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "vp9" and c.streams.audio[0].codec_context.name == "opus"


def test_options_that_mislead(tmp_path: Path, capsys) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, n=3, size=(32, 24), audio_start=None)
    assert main(["run", str(src), "--scale", "2", "--height", "96", *FAST]) == 2
    assert "--scale 2: scale and height both set the output size" in capsys.readouterr().err
    assert main(["weights", "verify", "compact"]) == 0
    assert "loads safely and matches compact" in capsys.readouterr().out
    assert main(["run", str(src), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "compact" and printed["scale"] == 4, printed
    assert main(["run", str(src), "--start", "0.04", "--duration", "0.04", *FAST]) == 0
    assert (tmp_path / "clip_x4_preview_0.04s-0.08s.mp4").is_file()
    assert main(["run", str(src), *FAST]) == 0, "the full run after a preview is not refused"
    assert (tmp_path / "clip_x4.mp4").is_file()


def test_quiet_silences_encoder_banners(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, n=3, size=(64, 48), audio_start=None)
    run = subprocess.run([sys.executable, "-m", "vsr", "run", str(src), "-o", str(tmp_path / "o.mkv"), "--model",
                          "bicubic", "--codec", "libsvtav1", "--encoder-opt", "preset=12", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "" and run.stdout == "", run.stderr[-500:]


def test_bench_explains_its_speedup(capsys) -> None:
    assert main(["bench", "--model", "bicubic", "--frames", "2", "--size", "32x24", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("speedup"))
    assert "the official-style baseline (fp32, batch 1" in line and "on a CPU" in line
