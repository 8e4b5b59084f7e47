"""Encoder choice and settings: default codec and pixel format from the source, one quality scale.

``--crf`` is on x264's scale everywhere; ``configs/encoders.yaml`` maps it onto each encoder's own
scale (or ProRes profile), adds each encoder's defaults, and names the software fallback of the
hardware encoders.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import yaml

from vsr.errors import UsageError
from vsr.media.color import Hdr10, is_rgb

log = logging.getLogger("vsr")

ENCODERS_YAML = Path(__file__).resolve().parent.parent / "configs" / "encoders.yaml"
DEFAULT_8BIT = "libx264"  # 8-bit sources
DEFAULT_HIGH_BIT = "libx265"  # 10-bit and deeper sources: main10 / 4:2:2 10 / 4:4:4 10
MP4_HEVC_TAG = "hvc1"  # what Apple players need to play HEVC in MP4/MOV


@lru_cache(maxsize=1)
def encoder_table() -> dict:
    return yaml.safe_load(ENCODERS_YAML.read_text())


@dataclass
class EncodeSettings:
    codec: str = DEFAULT_8BIT  # FFmpeg encoder name
    crf: int = 18  # x264 scale; mapped per encoder
    preset: str = "medium"
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)  # --encoder-opt, passed through last
    quiet: bool = False  # encoders that print on their own (SVT-AV1's banner) print errors only

    def silence(self) -> None:
        """Encoders that log past FFmpeg (SVT-AV1 reads SVT_LOG when it starts): errors only, when quiet."""
        if self.quiet and self.codec.startswith(("libsvtav1", "av1_svt")):
            os.environ["SVT_LOG"] = "1"

    def options_with_hdr(self, hdr: Hdr10 | None, source: str) -> dict[str, str]:
        """``codec_options()`` plus the source's HDR10 metadata where the encoder can carry it (libx265)."""
        options = self.codec_options()
        if hdr is not None:
            if self.codec == "libx265":
                options["x265-params"] = ":".join(p for p in (options.get("x265-params"), hdr.x265_params()) if p)
            else:
                log.warning("%s: HDR10 mastering metadata is carried with libx265 only; %s output has none",
                            source, self.codec)
        return options

    def codec_options(self) -> dict[str, str]:
        entry = encoder_table().get(self.codec, {})
        opts: dict[str, str] = {k: str(v) for k, v in entry.get("options", {}).items()}
        if "crf" in entry:
            m, offset, lo, hi = entry["crf"]
            opts[entry.get("crf_option", "crf")] = str(min(hi, max(lo, round(self.crf * m + offset))))
        if "profile_by_crf" in entry:
            opts["profile"] = next(p for limit, p in entry["profile_by_crf"] if self.crf <= limit)
        if "preset_option" in entry:
            opts[entry["preset_option"]] = str(entry.get("presets", {}).get(self.preset, self.preset))
        opts.update(self.options)
        return opts


def chroma(pix_fmt: str) -> str:
    """'420', '422', '444' or 'gray' for a pixel format (RGB counts as 4:4:4)."""
    if pix_fmt.startswith(("gray", "ya", "mono")):
        return "gray"
    fmt = av.VideoFormat(pix_fmt)
    w, h = fmt.chroma_width(4), fmt.chroma_height(4)
    if fmt.is_rgb or (w, h) == (4, 4) or pix_fmt.startswith(("gbr", "rgb", "bgr")):
        return "444"
    return "422" if h == 4 else "420"


def bit_depth(pix_fmt: str) -> int:
    return max(c.bits for c in av.VideoFormat(pix_fmt).components)


def supported_formats(encoder: str) -> list[str]:
    return [f.name for f in (av.Codec(encoder, "w").video_formats or [])]


def default_pix_fmt(encoder: str, source_pix_fmt: str) -> str:
    """Keep the source's chroma subsampling and bit depth where ``encoder`` can."""
    return pick_pix_fmt(encoder, source_pix_fmt, supported_formats(encoder))


def delivers(encoder: str) -> bool:
    """Whether ``encoder`` makes files for players (H.264, HEVC, VP9, AV1: ``delivery`` in
    encoders.yaml) rather than masters (FFV1, ProRes, which keep whatever they are given)."""
    return bool(encoder_table().get(encoder, {}).get("delivery"))


def pick_pix_fmt(encoder: str, source_pix_fmt: str, formats: list[str], fallbacks: tuple[str, ...] = ()) -> str:
    """The first of: the source's chroma and depth, the same chroma at 10 bits, 4:2:0 at the source's
    depth, 8-bit 4:2:0, then ``fallbacks``, that ``formats`` (what the encoder takes; empty: anything)
    holds. An RGB source (PNG frames, screen captures) counts as 4:2:0 for delivery encoders: browsers
    and QuickTime play no 4:4:4 H.264. Falling back is said in one line."""
    depth = bit_depth(source_pix_fmt)
    sub = chroma(source_pix_fmt)
    if sub == "444" and is_rgb(source_pix_fmt) and delivers(encoder):
        sub = "420"
    base = "gray" if sub == "gray" else f"yuv{sub}p"
    suffix = "" if depth <= 8 else ("10le" if depth <= 10 else "12le")
    for cand in (base + suffix, f"yuv{sub}p10le" if depth > 8 else "", f"yuv420p{suffix}", "yuv420p", *fallbacks):
        if cand and (not formats or cand in formats):
            if cand != base + suffix:
                log.info("%s cannot encode %s; using %s", encoder, base + suffix, cand)
            return cand
    return formats[0]


def usable(encoder: str) -> bool:
    """Whether ``encoder`` can really open here (hardware encoders need their device)."""
    try:
        ctx = av.CodecContext.create(encoder, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 64, 64, supported_formats(encoder)[0]
        ctx.time_base = Fraction(1, 25)
        ctx.open()
        return True
    except (ValueError, av.error.FFmpegError, IndexError):
        return False


def choose_encoder(requested: str | None, source_pix_fmt: str) -> str:
    """The encoder to use: the requested one, its software fallback when it cannot open (with a
    warning), or the default for the source's bit depth."""
    if requested is None:
        return DEFAULT_HIGH_BIT if bit_depth(source_pix_fmt) > 8 else DEFAULT_8BIT
    try:
        codec = av.Codec(requested, "w")
    except (ValueError, av.error.FFmpegError) as e:
        raise UsageError(f"unknown encoder {requested!r}; for example libx264, libx265, libsvtav1, "
                         f"libvpx-vp9, prores_ks, ffv1, h264_nvenc") from e
    if codec.type != "video":
        raise UsageError(f"encoder {requested!r} is not a video encoder")
    fallback = encoder_table().get(requested, {}).get("fallback")
    if fallback and not usable(requested):
        log.warning("%s cannot open on this machine (no such hardware); falling back to %s", requested, fallback)
        return fallback
    return requested


def parse_encoder_opts(items: list[str] | None) -> dict[str, str]:
    """``["key=value", ...]`` → dict, or UsageError naming the bad item."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"`encoder_opt` {item!r}: expected key=value")
        out[key] = value
    return out
