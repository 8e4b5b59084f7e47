"""vsr: streaming video super-resolution built on AdcSR.

The Python API, in whisper's manner::

    import vsr

    summary = vsr.upscale_video("clip.mp4", "clip_x4.mp4", model="compact", crf=16)
    print(summary.frames, summary.fps)

    model = vsr.load_model("compact")                  # an nn.Module with .descriptor
    up = vsr.Upscaler(model, tile=0)                   # frames in, frames out, on one device
    [big] = up.upscale([rgb], (w * 4, h * 4))          # (H, W, 3) uint8/uint16 -> (4H, 4W, 3)

Options are the flat names of the YAML config and of ``vsr run``'s flags (``crf``, ``scale``,
``segment_seconds``, ...; see ``vsr.OPTIONS``). Errors are ``vsr.VsrError`` subclasses.
"""

from __future__ import annotations

from pathlib import Path

from vsr.config import OPTIONS, RunConfig, load_config
from vsr.errors import (
    BusyError,
    InputError,
    Interrupted,
    OptionError,
    ProcessingError,
    UsageError,
    VsrError,
    WeightsError,
)
from vsr.jobs.file import RunSummary, upscale_file
from vsr.jobs.session import Session, open_session
from vsr.media.decode import read_rgb
from vsr.models import ModelDescriptor, available_models, load_model
from vsr.upscale.engine import Upscaler
from vsr.version import __version__


def upscale_video(src: str | Path, dst: str | Path | None = None, **options: object) -> RunSummary:
    """Upscale one video (or image, or image sequence) ``src`` into ``dst``.

    ``dst`` None: ``<stem>_x<scale>.<ext>`` beside the input. ``options``: the flat option names of
    the YAML config (``model="compact"``, ``scale=2``, ``crf=16``, ``start=12.0``, ``duration=3.0``,
    ``segment_seconds=60``, ...), checked as the CLI checks them (OptionError names a bad one).
    Returns a RunSummary: ``frames``, ``seconds`` (wall), ``fps``, ``size`` (output width, height).
    """
    with open_session(RunConfig(**options)) as session:
        return upscale_file(session, Path(src), Path(dst) if dst is not None else None)


__all__ = [
    "OPTIONS", "BusyError", "InputError", "Interrupted", "ModelDescriptor", "OptionError", "ProcessingError",
    "RunConfig", "RunSummary", "Session", "Upscaler", "UsageError", "VsrError", "WeightsError", "__version__",
    "available_models", "load_config", "load_model", "open_session", "read_rgb", "upscale_file", "upscale_video",
]
