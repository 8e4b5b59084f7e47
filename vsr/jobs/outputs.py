"""Where an output goes and what it is: default names and containers, checks before anything is
written, the output size, and the encoder settings (PyAV's encoders or the ffmpeg binary's)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from vsr.config import RunConfig
from vsr.errors import InputError, OptionError, UsageError
from vsr.media.codecs import (
    EncodeSettings,
    choose_encoder,
    default_pix_fmt,
    parse_encoder_opts,
    supported_formats,
)
from vsr.media.containers import (
    CONTAINER_DEFAULTS,
    CONTAINERS,
    FALLBACK_EXT,
    IMAGE_CODECS,
    container_holds,
    needs_even,
)
from vsr.media.ffmpeg import binary as ffmpeg_binary
from vsr.media.frame import VideoInfo
from vsr.media.sequence import is_pattern, is_sequence, sequence_name

log = logging.getLogger("vsr")


def output_codec(config: RunConfig, source_pix_fmt: str, dst: Path | None = None) -> str:
    """The video encoder, checked against what will run it: PyAV, or the ffmpeg binary (encoder=ffmpeg).
    Without a `codec`, the default for the source's depth, or, when the output ``dst`` is a container
    that cannot hold it, the container's own default encoder (`-o out.webm` → VP9, as ffmpeg does).
    Resolve it once per file and pass it on: a hardware encoder is test-opened, and a fallback warned."""
    codec = config.encode.codec
    if codec is None and dst is not None and not is_pattern(dst) and dst.suffix.lower() in CONTAINER_DEFAULTS:
        default = choose_encoder(None, source_pix_fmt)
        if not _holds(config, dst.suffix, default):
            codec = CONTAINER_DEFAULTS[dst.suffix.lower()]
    if config.encode.encoder == "ffmpeg":
        return ffmpeg_binary.choose_encoder(codec, source_pix_fmt)
    return choose_encoder(codec, source_pix_fmt)


def _holds(config: RunConfig, ext: str, codec: str) -> bool:
    if config.encode.encoder == "ffmpeg":
        return ffmpeg_binary.container_holds(ext, codec)
    return container_holds(ext, codec)


def suffix_for(config: RunConfig) -> str:
    """``_x4`` (``_720p`` with a height), plus ``_preview_12s-15s`` for a section."""
    m, t = config.model, config.timing
    size = f"_{m.height}p" if m.height else f"_x{m.scale}"
    if t.start is None and t.duration is None:
        return size
    start = t.start or 0
    end = f"{start + t.duration:g}s" if t.duration is not None else "end"
    return f"{size}_preview_{start:g}s-{end}"


# What vsr names its outputs: <stem>_x4.ext, <stem>_720p.ext, each perhaps _preview_<a>s-<b>s.
OUTPUT_NAME = re.compile(r".+_(x[1-8]|\d+p)(_preview_[\d.]+s-([\d.]+s|end))?$")


def looks_like_output(path: Path) -> bool:
    """Whether ``path`` is named as vsr names its outputs (by suffix_for)."""
    return bool(OUTPUT_NAME.match(path.stem))


def default_output(src: Path, config: RunConfig, info: VideoInfo, output_dir: Path | None = None,
                   codec: str | None = None) -> Path:
    """``<stem>_x<scale>.<ext>`` beside the input (or in ``output_dir``), in the input's container
    when it can hold the chosen ``codec`` (resolved here when not given) and keep the timing, else
    ``.mkv`` (said in one line)."""
    folder = output_dir or src.parent
    ext = src.suffix.lower()
    if is_sequence(src, config.timing.fps):
        # A sequence of frames becomes one clip; -o frame_%06d.png writes a sequence instead.
        return folder / f"{sequence_name(src)}{suffix_for(config)}{FALLBACK_EXT}"
    if info.is_image:
        ext = ext if ext in IMAGE_CODECS else ".png"
    else:
        encoder = codec or output_codec(config, info.pix_fmt)
        if not _holds(config, ext, encoder):
            log.info("%s: %s cannot hold %s with its timing; writing %s", src.name, ext or "(no extension)",
                     encoder, FALLBACK_EXT)
            ext = FALLBACK_EXT
    return folder / f"{src.stem}{suffix_for(config)}{ext}"


def check_output(src: Path, dst: Path, config: RunConfig, info: VideoInfo, codec: str | None) -> None:
    """Refuse an output that is the input, exists (without overwrite), has the wrong kind of
    extension, cannot hold ``codec`` (None for images) with the input's timing, or lies in a folder
    that cannot be written (a missing one is created)."""
    is_image = info.is_image
    if dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: the output may not be the input")
    if dst.exists() and not config.output.overwrite and not dst.is_dir():
        raise UsageError(f"{dst}: output exists; use `overwrite` to replace it")
    ext = dst.suffix.lower()
    if is_pattern(dst):
        if is_image or ext not in IMAGE_CODECS:
            raise UsageError(f"{dst}: a frame pattern is an output for videos, with an image extension "
                             f"({', '.join(IMAGE_CODECS)})")
    elif is_image and ext not in IMAGE_CODECS:
        raise UsageError(f"{dst}: an image input needs an image output ({', '.join(IMAGE_CODECS)})")
    elif not is_image:
        if ext not in CONTAINERS:
            raise UsageError(f"{dst}: unknown video container {ext!r}; use one of {', '.join(CONTAINERS)}")
        assert codec is not None, "a video input has its encoder resolved"
        if not _holds(config, ext, codec):
            raise UsageError(f"{dst}: {ext} cannot hold {codec} with the input's timing; use .mkv")
    folder = dst.parent
    try:  # as Real-ESRGAN and video2x do: an output folder that does not exist is made
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{folder}: cannot create the output folder ({e.strerror})") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{folder}: output folder is not writable")


def output_size(info: VideoInfo, config: RunConfig, pix_fmt: str | None, native: int = 0) -> tuple[int, int]:
    """(width, height) of the output, rounded up to even where ``pix_fmt`` subsamples chroma;
    refused before anything is allocated when it is over ``max_pixels``, or (``native``: the model's
    own scale, 0 unknown) when ``height`` asks more than the model computes."""
    if config.model.height:
        w, h = max(1, round(info.width * config.model.height / info.height)), config.model.height
        if native and h > info.height * native:
            raise OptionError("height", h, f"{info.path.name} is {info.height} px high and the model is ×{native}: "
                              f"{info.height * native} at most (larger would only be interpolated)",
                              config.sources.get("height"))
    else:
        w, h = info.width * config.model.scale, info.height * config.model.scale
    if w * h > config.model.max_pixels:
        raise InputError(f"{info.path}: output {w}x{h} = {w * h} pixels is over the limit of {config.model.max_pixels} "
                         "(`max_pixels`); use a smaller `scale` or `height`, or raise `max_pixels`")
    if pix_fmt is not None:
        even_w, even_h = needs_even(pix_fmt)
        rw, rh = w + (w % 2 if even_w else 0), h + (h % 2 if even_h else 0)
        if (rw, rh) != (w, h):
            log.info("%s: output %dx%d rounded to %dx%d (%s needs even sizes)", info.path.name, w, h, rw, rh, pix_fmt)
        w, h = rw, rh
    return w, h


def encode_settings(info: VideoInfo, config: RunConfig, codec: str) -> EncodeSettings:
    """Settings for ``codec`` (from output_codec); the source's chroma and bit depth are kept by default."""
    default_fmt = ffmpeg_binary.default_pix_fmt if config.encode.encoder == "ffmpeg" else default_pix_fmt
    asked = config.encode.pix_fmt
    if asked and config.encode.encoder != "ffmpeg":
        formats = supported_formats(codec)
        if formats and asked not in formats:
            raise OptionError("pix_fmt", asked, f"{codec} does not encode {asked}; it takes {', '.join(formats[:12])}"
                              + (", ..." if len(formats) > 12 else ""), config.sources.get("pix_fmt"))
    return EncodeSettings(
        codec=codec,
        crf=config.encode.crf,
        preset=config.encode.preset,
        pix_fmt=config.encode.pix_fmt or default_fmt(codec, info.pix_fmt),
        options=parse_encoder_opts(config.encode.encoder_opt),
        quiet=config.output.quiet,
    )
