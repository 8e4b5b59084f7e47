"""`vsr probe` tells what the run will do: interlacing that only the frames' flags reveal (PAL DV in
AVI), MPEG-2 and interlaced H.264, all made by the ffmpeg binary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from media import ffmpeg
from vsr.cli import main
from vsr.media.decode import VideoReader

SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=0.2"]
INTERLACED = {
    "dv.avi": ["-c:v", "dvvideo", "-pix_fmt", "yuv420p"],  # the stream header says nothing of fields
    "mpeg2.mpg": ["-vf", "setfield=tff", "-c:v", "mpeg2video", "-flags", "+ildct+ilme"],
    "h264.mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-flags", "+ildct+ilme", "-x264-params", "tff=1"],
}


@pytest.mark.parametrize("name", sorted(INTERLACED))
def test_probe_reports_interlacing_as_the_run_sees_it(name: str, tmp_path: Path, capsys) -> None:
    src = tmp_path / name
    ffmpeg(*SOURCE, *INTERLACED[name], str(src))
    assert main(["probe", str(src), "--json"]) == 0
    video = json.loads(capsys.readouterr().out)["streams"][0]
    assert video["field_order"] not in ("progressive", "unknown") and video["deinterlaced_by_run"] is True
    assert main(["probe", str(src)]) == 0
    text = capsys.readouterr().out
    assert "interlaced (" in text and "vsr run deinterlaces it" in text and "progressive" not in text
    with VideoReader(src, deinterlace="auto") as reader:  # what the run decides from the same file
        assert reader.peek() is not None and reader.deinterlaced


def test_progressive_stays_progressive(tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.mp4"
    ffmpeg(*SOURCE, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src))
    assert main(["probe", str(src), "--json"]) == 0
    video = json.loads(capsys.readouterr().out)["streams"][0]
    assert video["field_order"] == "progressive" and video["deinterlaced_by_run"] is False
