"""Regenerate examples/sample.mp4: 2 s of 176x144 H.264 at 25 fps with a stereo AAC tone."""

import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "tests"))
from media import make_video  # noqa: E402

make_video(here / "sample.mp4", n=50, size=(176, 144), rate=25, audio_start=0.0)
