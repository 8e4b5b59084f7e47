"""--denoise S: the compact model's grain/denoise pair blended at S, its default the file's own, and a
clear refusal for models without such a pair."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from media import write_frames
from vsr.cli import main
from vsr.media.decode import read_rgb

LOSSLESS = ["--codec", "ffv1", "--pix-fmt", "yuv444p", "--progress", "none", "--color-fix", "none"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Two frames of a smooth picture under strong sensor-like noise (sigma 12), stored losslessly."""
    path = tmp_path_factory.mktemp("dn") / "clip.mkv"
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:48, 0:64].astype(np.float64)
    smooth = np.stack([np.sin(x / 9) + np.cos(y / 7), np.sin((x + y) / 11), np.cos(x / 6 - y / 8)], -1) * 50 + 128
    frames = [av.VideoFrame.from_ndarray(np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8),
                                         format="rgb24") for _ in range(2)]
    write_frames(path, frames, "ffv1", "yuv444p")
    return path


def run(clip: Path, out: Path, *extra: str) -> list[np.ndarray]:
    assert main(["run", str(clip), "-o", str(out), "--model", "compact", *LOSSLESS, *extra]) == 0
    return read_rgb(out)


def test_denoise_blends_the_pair(clip: Path, tmp_path: Path) -> None:
    keep = run(clip, tmp_path / "s0.mkv", "--denoise", "0")
    clean = run(clip, tmp_path / "s1.mkv", "--denoise", "1")
    default = run(clip, tmp_path / "sd.mkv")
    quarter = run(clip, tmp_path / "sq.mkv", "--denoise", "0.25")
    assert not np.array_equal(keep[0], clean[0]), "the two sets differ"
    assert all(np.array_equal(a, b) for a, b in zip(default, quarter)), "the default is the file's 0.25"
    # The smoother set removes more high frequencies: less energy in the Laplacian.
    lap = lambda im: np.abs(np.diff(im.astype(np.float32), 2, axis=1)).mean()  # noqa: E731
    assert lap(clean[0]) < lap(keep[0])


@pytest.mark.parametrize("extra, needle", [
    (["--model", "bicubic", "--denoise", "0.5"], "grain/denoise weight pair"),
    (["--model", "compact", "--denoise", "2"], "--denoise 2.0: must be from 0 to 1"),
])
def test_denoise_refused_where_it_does_not_apply(extra: list, needle: str, clip: Path, tmp_path: Path,
                                                 capsys) -> None:
    assert main(["run", str(clip), "-o", str(tmp_path / "x.mkv"), "--progress", "none", *extra]) == 2
    assert needle in capsys.readouterr().err
