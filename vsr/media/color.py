"""Colour: convert YUV frames to RGB and back with the source's own matrix and range.

FFmpeg's swscale converts with BT.601 limited range unless told otherwise; a BT.709 HD source or a
full-range capture converted that way shifts every colour. vsr reads the tags of the input (frame
or stream), fills in what is unspecified the way players do (BT.709 from 720 lines up, BT.601 below;
limited range for YUV), converts with them, and tags the output with the same values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

HD_LINES = 720  # frames this tall or taller default to BT.709, smaller ones to BT.601 (as players do)
# AVColorSpace (what streams are tagged with) → swscale's matrix constants
_MATRIX = {
    1: Colorspace.ITU709,  # bt709
    4: Colorspace.FCC,  # fcc
    5: Colorspace.ITU601,  # bt470bg
    6: Colorspace.ITU601,  # smpte170m
    7: Colorspace.SMPTE240M,  # smpte240m
    9: Colorspace.BT2020,  # bt2020nc
    10: Colorspace.BT2020,  # bt2020c (converted as non-constant luminance, as swscale does)
}
UNSPECIFIED = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED
# Accurate rounding and full chroma interpolation: a flat patch comes back with the value it had.
SWS_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP


@dataclass(frozen=True)
class ColorTags:
    """The four colour tags of a stream, as FFmpeg's enum values (2 / 0 = unspecified)."""

    colorspace: int = UNSPECIFIED  # matrix (AVColorSpace)
    color_range: int = 0  # 1 limited (MPEG/tv), 2 full (JPEG/pc), 0 unspecified
    color_primaries: int = UNSPECIFIED
    color_trc: int = UNSPECIFIED

    @classmethod
    def of(cls, obj: av.VideoFrame | av.codec.context.CodecContext) -> ColorTags:
        return cls(int(obj.colorspace), int(obj.color_range), int(obj.color_primaries), int(obj.color_trc))

    def apply(self, obj: av.VideoFrame | av.codec.context.CodecContext) -> None:
        """Tag a frame or an encoder context with these values (unspecified ones stay unspecified)."""
        obj.colorspace, obj.color_range = self.colorspace, self.color_range
        obj.color_primaries, obj.color_trc = self.color_primaries, self.color_trc


def is_rgb(pix_fmt: str) -> bool:
    fmt = av.VideoFormat(pix_fmt)
    return fmt.is_rgb or pix_fmt.startswith(("gbr", "rgb", "bgr", "argb", "abgr", "rgba", "bgra"))


def matrix(tags: ColorTags, height: int) -> Colorspace:
    """The YUV↔RGB matrix to use: the tagged one, else BT.709 for HD and BT.601 for SD."""
    if tags.colorspace in _MATRIX:
        return _MATRIX[tags.colorspace]
    return Colorspace.ITU709 if height >= HD_LINES else Colorspace.ITU601


def yuv_range(tags: ColorTags, pix_fmt: str) -> ColorRange:
    if pix_fmt.startswith("yuvj") or tags.color_range == 2:
        return ColorRange.JPEG
    return ColorRange.MPEG


def rgb_format(bit_depth: int) -> str:
    return "rgb24" if bit_depth <= 8 else "rgb48le"


class RgbConverter:
    """Frame → (H, W, 3) RGB array, with the input's matrix and range. One per reader (not shared)."""

    def __init__(self, tags: ColorTags, bit_depth: int) -> None:
        self.tags, self.format = tags, rgb_format(bit_depth)
        self.sws = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        fmt = frame.format.name
        if is_rgb(fmt) or fmt.startswith(("gray", "ya", "pal", "mono")):
            return frame.to_ndarray(format=self.format)
        tags = ColorTags.of(frame)
        tags = tags if tags.colorspace != UNSPECIFIED or tags.color_range else self.tags
        rgb = self.sws.reformat(
            frame,
            format=self.format,
            src_colorspace=matrix(tags, frame.height),
            dst_colorspace=matrix(tags, frame.height),
            src_color_range=yuv_range(tags, fmt),
            dst_color_range=ColorRange.JPEG,
            interpolation=SWS_FLAGS,
        )
        return rgb.to_ndarray()


class YuvConverter:
    """(H, W, 3) RGB array → frame in the encoder's pixel format, tagged, with the same matrix and range."""

    def __init__(self, tags: ColorTags, pix_fmt: str, height: int) -> None:
        self.pix_fmt, self.tags = pix_fmt, tags
        self.rgb = not (not is_rgb(pix_fmt) and not pix_fmt.startswith("gray"))
        self.matrix = matrix(tags, height)
        self.range = yuv_range(tags, pix_fmt)
        self.sws = VideoReformatter()

    def __call__(self, image: np.ndarray) -> av.VideoFrame:
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=rgb_format(16 if image.dtype == np.uint16 else 8))
        if self.rgb:
            frame = self.sws.reformat(src, format=self.pix_fmt, interpolation=SWS_FLAGS)
        else:
            frame = self.sws.reformat(
                src,
                format=self.pix_fmt,
                src_colorspace=self.matrix,
                dst_colorspace=self.matrix,
                src_color_range=ColorRange.JPEG,
                dst_color_range=self.range,
                interpolation=SWS_FLAGS,
            )
        self.tags.apply(frame)
        return frame


# -- HDR10 static metadata ---------------------------------------------------------------------------
# FFmpeg's AVMasteringDisplayMetadata: primaries R, G, B then white point as (x, y) rationals, min and
# max luminance as rationals, then has_primaries, has_luminance (int32 each); AVContentLightMetadata:
# MaxCLL, MaxFALL (uint32). x265 wants chromaticities in 0.00002 units, luminance in 0.0001 cd/m².
_MDM = struct.Struct("<" + "ii" * 10 + "ii")
_CLL = struct.Struct("<II")
CHROMA_UNIT = 50000  # 1 / 0.00002
LUMA_UNIT = 10000  # 1 / 0.0001 cd/m²


@dataclass(frozen=True)
class Hdr10:
    """HDR10 static metadata in x265's notation (``master-display`` and ``max-cll`` values)."""

    master_display: str | None = None  # e.g. "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    max_cll: str | None = None  # "MaxCLL,MaxFALL", e.g. "1000,400"

    @classmethod
    def of(cls, frame: av.VideoFrame) -> Hdr10 | None:
        master = light = None
        try:
            entries = [(sd.type.name, bytes(sd)) for sd in frame.side_data]
        except ValueError:  # a side-data type this PyAV does not know (PNG's ICC profile): no HDR10 here
            return None
        for name, data in entries:
            if name == "MASTERING_DISPLAY_METADATA" and len(data) >= _MDM.size:
                v = _MDM.unpack_from(data)
                rat = [v[i] / v[i + 1] if v[i + 1] else 0.0 for i in range(0, 20, 2)]
                has_primaries, has_luminance = v[20], v[21]
                if has_primaries and has_luminance:
                    (rx, ry, gx, gy, bx, by, wx, wy, lmin, lmax) = rat
                    c = lambda x: round(x * CHROMA_UNIT)  # noqa: E731
                    master = (f"G({c(gx)},{c(gy)})B({c(bx)},{c(by)})R({c(rx)},{c(ry)})"
                              f"WP({c(wx)},{c(wy)})L({round(lmax * LUMA_UNIT)},{round(lmin * LUMA_UNIT)})")
            elif name == "CONTENT_LIGHT_LEVEL" and len(data) >= _CLL.size:
                light = "{},{}".format(*_CLL.unpack_from(data))
        return cls(master, light) if master or light else None

    def x265_params(self) -> str:
        parts = ["hdr10=1", "repeat-headers=1"]
        if self.master_display:
            parts.append(f"master-display={self.master_display}")
        if self.max_cll:
            parts.append(f"max-cll={self.max_cll}")
        return ":".join(parts)
