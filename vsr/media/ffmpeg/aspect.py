"""The sample aspect ratio of Matroska and WebM outputs.

FFmpeg's Matroska muxer writes a track's display size from the stream's own aspect ratio, which
PyAV cannot set (only the codec's), so a VP9 or AV1 stream in MKV/WebM would play with square
pixels, while MP4 keeps it. Codecs that carry the ratio in their bitstream (H.264, HEVC) are shown
right by most players anyway, the others not. After such a file is finished, the ffmpeg binary
remuxes it, every stream copied, with ``-aspect`` on the video: what the output says is then what
the input said.
"""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

from vsr.errors import ProcessingError
from vsr.media.ffmpeg.locate import find_ffmpeg

MATROSKA = ("matroska", "webm")
REMUX_TIMEOUT_S = 3600  # a remux copies the file once: minutes for hours of video


def needs_aspect(fmt: str, sar: Fraction | None) -> bool:
    return fmt in MATROSKA and sar is not None and sar != 1


def restore_aspect(path: Path, fmt: str, width: int, height: int, sar: Fraction) -> None:
    """Remux ``path`` (a finished file, still at its ``.partial`` name) in place so its video track
    shows at ``sar``."""
    dar = Fraction(width, height) * sar
    tmp = path.with_name(path.name + ".aspect")
    cmd = [find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(path), "-map", "0",
           "-c", "copy", "-copyts", "-map_metadata", "0", "-map_chapters", "0", "-aspect:v:0",
           f"{dar.numerator}:{dar.denominator}", "-f", fmt, str(tmp)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=REMUX_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        tmp.unlink(missing_ok=True)
        raise ProcessingError(f"{path}: setting its aspect ratio failed ({e})") from e
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ProcessingError(f"{path}: setting its aspect ratio failed: {done.stderr.strip()[-300:]}")
    os.replace(tmp, path)
