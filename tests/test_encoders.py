"""Every encoder the README lists, in every container of MP4, MKV and WebM it fits: the output plays
with the input's aspect ratio (VP9 and AV1 in Matroska carry it only in the container)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import ffmpeg, make_video
from vsr.cli import main

SAR = Fraction(16, 11)  # PAL-style non-square pixels
FASTEST = {"libx264": [], "libx265": [], "libsvtav1": ["--encoder-opt", "preset=12"],
           "libvpx-vp9": ["--encoder-opt", "deadline=realtime", "--encoder-opt", "cpu-used=8"],
           "prores_ks": [], "ffv1": []}
FITS = {"libx264": ("mp4", "mkv"), "libx265": ("mp4", "mkv"), "libsvtav1": ("mp4", "mkv", "webm"),
        "libvpx-vp9": ("mp4", "mkv", "webm"), "prores_ks": ("mov", "mkv"), "ffv1": ("mkv",)}
CASES = [(enc, ext) for enc, exts in FITS.items() for ext in exts]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sar") / "pal.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.2", "-vf", f"setsar={SAR.numerator}/{SAR.denominator}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    with av.open(str(path)) as c:
        assert c.streams.video[0].sample_aspect_ratio == SAR
    return path


@pytest.mark.parametrize("encoder, ext", CASES, ids=[f"{e}-{x}" for e, x in CASES])
def test_aspect_ratio_is_kept(encoder: str, ext: str, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / f"out.{ext}"
    assert main(["run", str(clip), "-o", str(out), "--model", "bicubic", "--codec", encoder, "--preset", "ultrafast",
                 "--progress", "none", "--quiet", *FASTEST[encoder]]) == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (256, 192)
        sar = v.sample_aspect_ratio
        # WebM stores the display size in whole pixels: the ratio comes back within one of them.
        assert sar == SAR or (ext == "webm" and sar and abs(float(sar) - float(SAR)) * v.width <= 1), \
            f"{encoder} in .{ext}: SAR {sar}"
        assert sum(1 for _ in c.decode(v)) == 5


def test_a_pixel_format_the_codec_lacks_is_an_option_error(tmp_path: Path, capsys) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, n=2, size=(32, 24), audio_start=None)
    assert main(["run", str(clip), "--model", "bicubic", "--codec", "ffv1", "--pix-fmt", "gbrp",
                 "-o", str(tmp_path / "o.mkv")]) == 2  # was exit 1, "encoding failed (Invalid argument)"
    assert "--pix-fmt gbrp: ffv1 does not encode gbrp; it takes yuv420p" in capsys.readouterr().err
