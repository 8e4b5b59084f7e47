"""Finding an ``ffmpeg`` binary: the one on PATH, else the one the imageio-ffmpeg package ships (a vsr
dependency, so there always is one)."""

from __future__ import annotations

import shutil

from vsr.errors import UsageError

INSTALL_HINT = "pip install imageio-ffmpeg"


def find_ffmpeg() -> str:
    """The ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled binary, else UsageError."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # optional import: PATH is tried first

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise UsageError(f"no ffmpeg binary on PATH and none from imageio-ffmpeg ({e}); install ffmpeg or "
                         f"{INSTALL_HINT}") from e
