"""The Python API: the README's example runs as written on a real encoded clip, and the functions
do what their docstrings say."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import vsr
from media import video_frames

REPO = Path(__file__).resolve().parents[1]


def readme_python() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "sample.mp4", tmp_path / "examples" / "sample.mp4")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    src = video_frames(tmp_path / "examples" / "sample.mp4")
    assert [t for t, _ in video_frames(tmp_path / "sample_x2.mp4")] == [t for t, _ in src]
    # Matroska holds no negative times: the AAC priming (-21 ms in the MP4) shifts every stream alike.
    mkv = [t for t, _ in video_frames(tmp_path / "sample_bicubic.mkv")]
    assert [t - mkv[0] for t in mkv] == [t for t, _ in src]
    assert f"{len(src)} frames" in out and "exit code" not in out


def test_api_shapes_and_errors(tmp_path: Path) -> None:
    model = vsr.load_model("bicubic")
    assert model.descriptor.scale == 4 and model.descriptor.multiple == 1
    up = vsr.Upscaler(model, tile=0, batch=1)
    rgb = np.zeros((6, 10, 3), np.uint16)
    [big] = up.upscale([rgb], (20, 12))
    assert big.shape == (12, 20, 3) and big.dtype == np.uint16
    with pytest.raises(vsr.OptionError) as e:
        vsr.upscale_video(tmp_path / "none.mp4", crf=99)
    assert e.value.option == "crf" and e.value.exit_code == 2
    with pytest.raises(vsr.InputError):
        vsr.upscale_video(tmp_path / "none.mp4", model="bicubic")
    assert "compact" in vsr.available_models() and "crf" in vsr.OPTIONS
