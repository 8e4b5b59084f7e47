"""Image outputs: one image (``write_image``), or a frame-pattern sequence (``SequenceWriter``)."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr.errors import ProcessingError, UsageError
from vsr.media.containers import IMAGE_CODECS, JPEG_QSCALE
from vsr.media.encode import WriteReport
from vsr.media.frame import Frame
from vsr.media.sequence import frame_path, matches, sequence_name


class SequenceWriter:
    """Writes frame N (1-based, as FFmpeg numbers) to ``pattern % N``; atomic for the whole sequence:
    frames go to a hidden partial folder and move into place when the last one is written."""

    def __init__(self, pattern: Path, overwrite: bool) -> None:
        if pattern.suffix.lower() not in IMAGE_CODECS:
            raise UsageError(f"{pattern}: a frame pattern needs an image extension ({', '.join(IMAGE_CODECS)})")
        if not overwrite and matches(pattern):
            raise UsageError(f"{pattern}: frames of this pattern exist; use `overwrite` to replace them")
        self.pattern = pattern
        self.partial = pattern.parent / f".{sequence_name(pattern) or 'frames'}.vsr-partial"
        shutil.rmtree(self.partial, ignore_errors=True)
        try:
            self.partial.mkdir(parents=True)
        except OSError as e:
            raise UsageError(f"{pattern.parent}: cannot write frames there ({e.strerror})") from e
        self.frames = 0

    def write(self, frame: Frame) -> None:
        self.frames += 1
        write_image(self.partial / frame_path(self.pattern, self.frames).name, frame.image, self.pattern.suffix)

    def close(self) -> WriteReport:
        try:
            for f in sorted(self.partial.iterdir()):
                f.replace(self.pattern.parent / f.name)
        except OSError as e:
            raise ProcessingError(f"{self.pattern}: cannot move the finished frames into place ({e})") from e
        finally:
            self.abort()
        return WriteReport(self.frames)

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


def write_image(path: Path, image: np.ndarray, ext: str) -> None:
    """Encode one RGB image (uint8 or uint16) with FFmpeg's image encoder for ``ext``."""
    if ext.lower() not in IMAGE_CODECS:
        raise UsageError(f"cannot write {ext!r} images; use one of {', '.join(IMAGE_CODECS)}")
    encoder, fmt8, fmt16 = IMAGE_CODECS[ext.lower()]
    src = "rgb48le" if image.dtype == np.uint16 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=src)
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = fmt16 if image.dtype == np.uint16 else fmt8
    ctx.time_base = Fraction(1, 25)
    if encoder == "mjpeg":
        ctx.qscale = JPEG_QSCALE
        ctx.options = {"qmin": str(JPEG_QSCALE), "qmax": str(JPEG_QSCALE)}
    frame = frame.reformat(format=ctx.pix_fmt)
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))
    try:
        path.write_bytes(data)
    except OSError as e:
        raise ProcessingError(f"{path}: cannot write image ({e.strerror})") from e
