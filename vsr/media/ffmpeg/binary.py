"""The ``ffmpeg`` binary behind ``--encoder ffmpeg``: finding it, asking it what it can encode, and
its command line.

The binary is the one on PATH, else the one imageio-ffmpeg ships. Its own encoder list and pixel
formats (``-encoders``, ``-h encoder=NAME``) decide which encoders, containers and pixel formats are
accepted, with a one-frame trial run where a hardware encoder may lack its device (then the encoder's
software fallback is used). ``build_command`` writes, with ffmpeg-python, the command line that
vsr.media.ffmpeg.writer runs: raw RGB on stdin, the conversion to the encoder's pixel format with the
input's matrix and range, colour tags, SAR, the upload of frames for GPU-only encoders, NUT on stdout.
"""

from __future__ import annotations

import logging
import re
import subprocess
from fractions import Fraction
from functools import lru_cache

from av.video.reformatter import Colorspace

from vsr.errors import UsageError
from vsr.media import containers
from vsr.media.codecs import (
    DEFAULT_8BIT,
    DEFAULT_HIGH_BIT,
    EncodeSettings,
    bit_depth,
    encoder_table,
    pick_pix_fmt,
)
from vsr.media.color import is_rgb, matrix
from vsr.media.encode import output_tags
from vsr.media.ffmpeg.locate import find_ffmpeg
from vsr.media.frame import VideoInfo

log = logging.getLogger("vsr")

PROBE_TIMEOUT_S = 30  # running `ffmpeg -encoders`, or one test frame through a hardware encoder
# Encoders that take frames only in GPU memory: upload through a device of this type.
HW_UPLOAD = {"_vaapi": "vaapi", "_vulkan": "vulkan"}
HW_PIX_FMTS = frozenset({"vaapi", "vulkan", "qsv", "cuda", "d3d11", "d3d12", "dxva2_vld", "videotoolbox_vld",
                         "drm_prime", "mediacodec", "opencl", "vdpau", "amf"})
# swscale's matrix names for the scale filter's out_color_matrix (color.matrix() → name)
SCALE_MATRIX = {Colorspace.ITU709: "bt709", Colorspace.ITU601: "bt601", Colorspace.FCC: "fcc",
                Colorspace.SMPTE240M: "smpte240m", Colorspace.BT2020: "bt2020"}
# As color.SWS_FLAGS: a flat patch comes back with the value it had.
SCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int+full_chroma_inp"


def ffmpeg_python():
    try:
        import ffmpeg
    except ImportError as e:
        raise UsageError("`encoder` ffmpeg needs ffmpeg-python: pip install 'vsr[ffmpeg]'") from e
    return ffmpeg


def _query(binary: str, *args: str) -> str:
    try:
        done = subprocess.run([binary, "-hide_banner", *args], capture_output=True, text=True, errors="replace",
                              timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"{binary}: cannot run ffmpeg ({e})") from e
    return done.stdout


@lru_cache(maxsize=4)
def encoders(binary: str) -> dict[str, str]:
    """Video encoder name → codec it produces, as ``binary -encoders`` lists them."""
    out = {}
    for line in _query(binary, "-encoders").splitlines():
        m = re.match(r"\s*V[A-Z.]{5}\s+(\S+)\s+(.*)$", line)
        if m and m.group(1) != "=":
            codec = re.search(r"\(codec (\S+)\)\s*$", m.group(2))
            out[m.group(1)] = codec.group(1) if codec else m.group(1)
    return out


@lru_cache(maxsize=32)
def pixel_formats(binary: str, encoder: str) -> tuple[str, ...]:
    """The pixel formats ``encoder`` takes, as ``binary -h encoder=NAME`` says (empty: not listed)."""
    m = re.search(r"Supported pixel formats:\s*(.*)", _query(binary, "-h", f"encoder={encoder}"))
    return tuple(m.group(1).split()) if m else ()


def hw_device(encoder: str) -> str | None:
    """The hardware device type frames must be uploaded to for ``encoder`` (None: system memory)."""
    return next((kind for suffix, kind in HW_UPLOAD.items() if encoder.endswith(suffix)), None)


def codec_family(encoder: str) -> str:
    binary = find_ffmpeg()
    table = encoders(binary)
    if encoder not in table:
        raise UsageError(f"{binary} has no video encoder {encoder!r} (see `{binary} -encoders`)")
    return table[encoder]


def container_holds(ext: str, encoder: str, vfr: bool = True) -> bool:
    """As containers.container_holds, for an encoder of the ffmpeg binary."""
    return containers.container_holds(ext, encoder, vfr, family=codec_family)


def _opens(binary: str, encoder: str) -> bool:
    """Whether ``encoder`` really encodes a frame here (hardware encoders need their device)."""
    size = 256
    cmd = [binary, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
           "-i", "pipe:0", "-frames:v", "1", "-c:v", encoder, "-f", "null", "-"]
    try:
        done = subprocess.run(cmd, input=bytes(size * size * 3), capture_output=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_encoder(requested: str | None, source_pix_fmt: str) -> str:
    """As encoders.choose_encoder, against the ffmpeg binary's own encoder list."""
    binary = find_ffmpeg()
    if requested is None:
        requested = DEFAULT_HIGH_BIT if bit_depth(source_pix_fmt) > 8 else DEFAULT_8BIT
    codec_family(requested)  # UsageError when the binary lacks it
    fallback = encoder_table().get(requested, {}).get("fallback")
    if fallback and not _opens(binary, requested):
        log.warning("%s cannot open on this machine (no such hardware); falling back to %s", requested, fallback)
        codec_family(fallback)
        return fallback
    return requested


def default_pix_fmt(encoder: str, source_pix_fmt: str) -> str:
    """Keep the source's chroma subsampling and bit depth where ``encoder`` can (as encoders.default_pix_fmt).
    For an encoder that takes GPU frames only (VAAPI, Vulkan) this is the format uploaded: nv12 or p010le."""
    depth = bit_depth(source_pix_fmt)
    listed = pixel_formats(find_ffmpeg(), encoder)
    formats = [f for f in listed if f not in HW_PIX_FMTS]
    if listed and not formats:
        return "p010le" if depth > 8 else "nv12"
    return pick_pix_fmt(encoder, source_pix_fmt, formats, ("p010le" if depth > 8 else "", "nv12"))


def pipe_rate(info: VideoInfo) -> Fraction:
    """The constant rate the raw pipe runs at: the input's average rate (rate control uses it)."""
    rate = Fraction(info.frame_rate or 25).limit_denominator(1_001_000)
    return rate if rate > 0 else Fraction(25)


def _color_options(tags) -> tuple[tuple[str, int, int], ...]:
    """(ffmpeg option, value, its unspecified value) for the four colour tags."""
    return (("color_range", tags.color_range, 0), ("colorspace", tags.colorspace, 2),
            ("color_primaries", tags.color_primaries, 2), ("color_trc", tags.color_trc, 2))


def build_command(binary: str, info: VideoInfo, size: tuple[int, int], settings: EncodeSettings, high_bit: bool) -> list[str]:
    """The ffmpeg command line: raw RGB on stdin → encoder → NUT on stdout."""
    ffmpeg = ffmpeg_python()
    width, height = size
    tags = output_tags(info)
    device = hw_device(settings.codec)
    rate = pipe_rate(info)
    stream = ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="rgb48le" if high_bit else "rgb24",
                          s=f"{width}x{height}", framerate=f"{rate.numerator}/{rate.denominator}")
    if is_rgb(settings.pix_fmt) or settings.pix_fmt.startswith("gray"):
        stream = stream.filter("scale", flags=SCALE_FLAGS)
    else:
        full = settings.pix_fmt.startswith("yuvj") or tags.color_range == 2
        stream = stream.filter("scale", flags=SCALE_FLAGS, out_color_matrix=SCALE_MATRIX[matrix(tags, height)],
                               out_range="pc" if full else "tv")
    stream = stream.filter("format", settings.pix_fmt)
    # The frames carry the tags too: newer ffmpeg takes the encoder's colour tags from its frames.
    color = {"range" if k == "color_range" else k: str(v) for k, v, unspecified in _color_options(tags) if v != unspecified}
    if color:
        stream = stream.filter("setparams", **color)
    if info.sample_aspect_ratio:
        sar = Fraction(info.sample_aspect_ratio)
        stream = stream.filter("setsar", f"{sar.numerator}/{sar.denominator}")
    if device is not None:
        stream = stream.filter("hwupload")
    options = settings.options_with_hdr(info.hdr, info.path.name)
    out: dict[str, str] = {"c:v": settings.codec}
    if device is None:
        out["pix_fmt:v"] = settings.pix_fmt
    for key, value, unspecified in _color_options(tags):
        if value != unspecified:
            out[f"{key}:v"] = str(value)
    out.update({f"{k}:v": str(v) for k, v in options.items()})
    head = [binary, "-hide_banner", "-nostats", "-loglevel", "warning"]
    if device is not None:
        head += ["-init_hw_device", f"{device}=vsr", "-filter_hw_device", "vsr"]
    return ffmpeg.output(stream, "pipe:1", format="nut", **out).compile(cmd=head)
