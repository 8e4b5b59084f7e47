"""What vsr must not damage: colour, bit depth, chroma, streams, metadata, geometry, encoders."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import ffmpeg, make_video, packets, write_frames
from vsr.cli import main

KR_KB = {5: (0.299, 0.114), 1: (0.2126, 0.0722), 9: (0.2627, 0.0593)}  # AVColorSpace → luma weights
PATCHES = [(200, 30, 90), (20, 180, 240), (128, 128, 128), (240, 220, 40)]  # RGB, 8-bit


def run(*args: str) -> int:
    return main(["run", *args, "--progress", "none"])


def yuv_of(rgb: tuple[int, int, int], space: int, full: bool, depth: int = 8) -> np.ndarray:
    """The Y, Cb, Cr code values of an RGB colour under matrix ``space`` and range (analytic)."""
    kr, kb = KR_KB[space]
    r, g, b = (c / 255 for c in rgb)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    scale = 2 ** (depth - 8)
    if full:
        return np.array([y * 255, 128 + cb * 255, 128 + cr * 255]) * scale
    return np.array([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr]) * scale


def write_yuv_patches(path: Path, space: int, full: bool, pix_fmt: str = "yuv444p", codec: str = "ffv1",
                      size: tuple[int, int] = (64, 32), depth: int = 8, extra: int = 0) -> list[np.ndarray]:
    """A lossless clip of flat colour patches whose YUV values are computed here, tagged accordingly."""
    w, h = size
    planes = np.zeros((3, h, w))
    pw = w // len(PATCHES)
    for i, rgb in enumerate(PATCHES):
        planes[:, :, i * pw : (i + 1) * pw] = yuv_of(rgb, space, full, depth)[:, None, None]
    planes = np.round(planes) + extra
    dtype = np.uint16 if depth > 8 else np.uint8
    frame = av.VideoFrame(w, h, pix_fmt)
    sub_w, sub_h = av.VideoFormat(pix_fmt).chroma_width(w), av.VideoFormat(pix_fmt).chroma_height(h)
    for p, plane in enumerate(planes):
        arr = plane if p == 0 else plane[:: h // sub_h, :: w // sub_w]
        data = arr.astype(dtype)
        frame.planes[p].update(np.ascontiguousarray(data).tobytes() if frame.planes[p].line_size == data.strides[0]
                               else _pad_rows(data, frame.planes[p].line_size))
    frame.colorspace, frame.color_range = space, 2 if full else 1
    write_frames(path, [frame] * 3, codec, pix_fmt, colorspace=space, color_range=2 if full else 1,
                 color_primaries=space, color_trc=space)
    return [p for p in planes]


def _pad_rows(data: np.ndarray, line_size: int) -> bytes:
    rows = data.view(np.uint8).reshape(data.shape[0], -1)
    padded = np.zeros((rows.shape[0], line_size), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return padded.tobytes()


def decoded_planes(path: Path) -> tuple[av.VideoFrame, list[np.ndarray]]:
    with av.open(str(path)) as c:
        f = next(c.decode(c.streams.video[0]))
        fmt = f.format.name
        depth = 16 if "10" in fmt or "12" in fmt else 8
        dtype = np.uint16 if depth > 8 else np.uint8
        planes = []
        for p in f.planes:
            arr = np.frombuffer(p, dtype=np.uint8).reshape(p.height, p.line_size).view(dtype)[:, : p.width]
            planes.append(arr.astype(float))
        return f, planes


@pytest.mark.parametrize("space", [5, 1, 9], ids=["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
def test_colour_round_trip_values_and_tags(tmp_path: Path, space: int, full: bool) -> None:
    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    want = write_yuv_patches(src, space, full)
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--scale", "1", "--codec", "ffv1") == 0
    frame, got = decoded_planes(out)
    assert (int(frame.colorspace), int(frame.color_range)) == (space, 2 if full else 1)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (int(cc.color_primaries), int(cc.color_trc)) == (space, space)
    pw = 64 // len(PATCHES)
    for i in range(len(PATCHES)):
        inner = (slice(4, 28), slice(i * pw + 4, (i + 1) * pw - 4))  # away from patch edges
        for p in range(3):
            assert np.abs(got[p][inner] - want[p][inner]).max() <= 1.0, (PATCHES[i], p)


def test_ten_bit_stays_ten_bit(tmp_path: Path) -> None:
    src = tmp_path / "deep.mkv"
    want = write_yuv_patches(src, 1, False, pix_fmt="yuv422p10le", depth=10, extra=1)  # odd codes: not 8-bit
    lossless = tmp_path / "lossless.mkv"
    assert run(str(src), "-o", str(lossless), "--model", "bicubic", "--scale", "1", "--codec", "ffv1") == 0
    frame, got = decoded_planes(lossless)
    assert frame.format.name == "yuv422p10le"  # 4:2:2 and 10 bits kept
    inner = (slice(4, 28), slice(4, 12))
    assert np.abs(got[0][inner] - want[0][inner]).max() <= 1.0
    assert (got[0][inner] % 4 != 0).any(), "10-bit codes that 8 bits cannot hold survive"
    default = tmp_path / "default.mp4"
    assert run(str(src), "-o", str(default), "--model", "bicubic") == 0
    with av.open(str(default)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt) == ("hevc", "yuv422p10le")
        assert v.codec_tag == "hvc1"


def test_chroma_444_kept(tmp_path: Path) -> None:
    src, out = tmp_path / "444.mkv", tmp_path / "444_out.mkv"
    make_video(src, n=3, size=(32, 32), pix_fmt="yuv444p", audio_start=None)
    assert run(str(src), "-o", str(out), "--model", "bicubic") == 0
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.video[0].codec_context.pix_fmt) == ("h264", "yuv444p")


@pytest.fixture(scope="module")
def rich_mkv(tmp_path_factory) -> Path:
    """Video + two audio tracks (one PCM) + SRT and ASS subtitles + a font + chapters + tags."""
    d = tmp_path_factory.mktemp("rich")
    base = d / "base.mp4"
    make_video(base, n=25, size=(32, 32), rate=25, audio_start=0.0)
    srt = d / "s.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,400\nHello <i>world</i>\n\n2\n00:00:00,500 --> 00:00:00,900\nSecond\n")
    ass = d / "s.ass"
    ass.write_text(
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, Bold\n"
        "Style: Default,Arial,20,&H00FFFFFF,0\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, "
        "MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:00.20,0:00:00.60,Default,,0,0,0,,{\\i1}Styled{\\i0} line\n"
    )
    font = d / "font.ttf"
    font.write_bytes(b"\x00\x01\x00\x00not really a font")
    meta = d / "chapters.txt"
    meta.write_text(";FFMETADATA1\ntitle=Archive reel 7\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=Opening\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=Second\n")
    out = d / "rich.mkv"
    ffmpeg("-i", str(base), "-i", str(srt), "-i", str(ass), "-f", "ffmetadata", "-i", str(meta),
           "-map", "0:v", "-map", "0:a", "-map", "0:a", "-map", "1", "-map", "2", "-map_metadata", "3",
           "-map_chapters", "3", "-c:v", "copy", "-c:a:0", "copy", "-c:a:1", "pcm_s16le", "-c:s", "copy",
           "-attach", str(font), "-metadata:s:t", "mimetype=application/x-truetype-font",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Commentary",
           "-metadata:s:s:0", "language=deu", "-metadata:s:s:1", "language=jpn",
           "-disposition:a:1", "comment", "-disposition:s:0", "default+forced", str(out))
    return out


def _streams(path: Path) -> list[tuple]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name if s.codec_context else None, s.language, s.metadata.get("title"),
                 int(s.disposition)) for s in c.streams if s.type != "video"]


def test_every_stream_copied_into_mkv(rich_mkv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    assert run(str(rich_mkv), "-o", str(out), "--model", "bicubic") == 0
    assert _streams(out) == _streams(rich_mkv)  # codecs, languages, titles, dispositions, attachment
    for kind in ("audio", "subtitles"):
        assert packets(out, kind) == packets(rich_mkv, kind)
    with av.open(str(out)) as c, av.open(str(rich_mkv)) as i:
        assert c.metadata["title"] == "Archive reel 7"
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["Opening", "Second"]
        assert [(ch["start"] * ch["time_base"], ch["end"] * ch["time_base"]) for ch in c.chapters()] == \
            [(ch["start"] * ch["time_base"], ch["end"] * ch["time_base"]) for ch in i.chapters()]
        att = [s for s in c.streams if s.type == "attachment"][0]
        assert (att.name, bytes(att.data)) == ("font.ttf", b"\x00\x01\x00\x00not really a font")
        tags = {k.lower(): v for k, v in c.metadata.items()}  # Matroska upper-cases tag names
        assert tags["vsr_model"] == "bicubic" and tags["vsr"].startswith("vsr ") and tags["vsr_weights"] == "none"


def test_conversions_into_mp4(rich_mkv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    assert run(str(rich_mkv), "-o", str(out), "--model", "bicubic") == 0
    err = capsys.readouterr().err
    assert "converting to AAC" in err and "converting srt to mov_text" in err and "dropping attachment font.ttf" in err
    streams = [s for s in _streams(out) if s[0] != "data"]  # MP4 stores chapters as a text track
    assert [(t, c, lang) for t, c, lang, _, _ in streams] == [
        ("audio", "aac", "eng"), ("audio", "aac", "fra"), ("subtitle", "mov_text", "deu"), ("subtitle", "mov_text", "jpn")]
    assert packets(out, "audio")[:5] == packets(rich_mkv, "audio")[:5]  # the AAC track is still a copy
    with av.open(str(out)) as c:
        texts: dict[int, list[bytes]] = {0: [], 1: []}
        for p in c.demux(list(c.streams.subtitles)):
            if p.size > 2:
                texts[p.stream.index - c.streams.subtitles[0].index].append(bytes(p)[2:])
        assert texts == {0: [b"Hello world", b"Second"], 1: [b"Styled line"]}
        assert c.metadata.get("vsr_model") == "bicubic"  # MP4 keeps custom tags (use_metadata_tags)
        assert len(c.chapters()) == 2
    assert run(str(rich_mkv), "-o", str(tmp_path / "bare.mkv"), "--model", "bicubic", "--no-subtitles", "--no-audio") == 0
    assert [t for t, *_ in _streams(tmp_path / "bare.mkv")] == ["attachment"]


def test_aspect_ratio_and_rotation_kept(tmp_path: Path) -> None:
    base = tmp_path / "base.mp4"
    make_video(base, n=3, size=(72, 48), audio_start=None)
    src = tmp_path / "anamorphic.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(base), "-c", "copy", "-bsf:v", "h264_metadata=sample_aspect_ratio=8/9",
           str(src))
    out = tmp_path / "out.mp4"
    assert run(str(src), "-o", str(out), "--model", "bicubic") == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.sample_aspect_ratio == Fraction(8, 9)
        assert next(c.decode(v)).rotation == 90


@pytest.mark.parametrize(("encoder", "codec", "ext"), [
    ("libx265", "hevc", ".mp4"), ("libsvtav1", "av1", ".mkv"), ("libvpx-vp9", "vp9", ".webm"),
    ("prores_ks", "prores", ".mov"), ("ffv1", "ffv1", ".mkv"),
])
def test_encoders(tmp_path: Path, encoder: str, codec: str, ext: str) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, n=3, size=(32, 32), audio_start=0.0)
    out = tmp_path / f"out{ext}"
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--codec", encoder, "--preset", "ultrafast"
               if encoder != "prores_ks" else "medium") == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.codec.canonical_name == codec
        assert len(list(c.decode(c.streams.video[0]))) == 3
        assert len(c.streams.audio) == 1


def test_hardware_encoder_falls_back_and_options_pass_through(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, n=12, size=(32, 32), audio_start=None)
    out = tmp_path / "out.mp4"
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--codec", "h264_nvenc", "--encoder-opt", "g=4") == 0
    assert "falling back to libx264" in capsys.readouterr().err
    with av.open(str(out)) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
        assert c.streams.video[0].codec_context.name == "h264" and sum(keys) >= 3  # g=4 reached x264
    assert run(str(src), "-o", str(tmp_path / "bad.mp4"), "--model", "bicubic", "--encoder-opt", "novalue") == 2


def combing(image: np.ndarray) -> float:
    """Mean distance of each line from the average of its neighbours: high for woven fields."""
    x = image.astype(float).mean(axis=2)
    return float(np.abs(x[1:-1] - (x[:-2] + x[2:]) / 2).mean())


def write_interlaced(path: Path, n: int = 10, size: int = 64) -> None:
    """Top-field-first frames whose two fields show a bar at different times (true combing)."""
    frames = []
    for i in range(n):
        img = np.full((size, size, 3), 30, np.uint8)
        x0, x1 = (6 * i) % (size - 12), (6 * i + 3) % (size - 12)
        img[0::2, x0 : x0 + 8] = 230  # top field, time t
        img[1::2, x1 : x1 + 8] = 230  # bottom field, time t + 1/50 s
        frames.append(av.VideoFrame.from_ndarray(img, format="rgb24"))
    write_frames(path, frames, "ffv1", "yuv444p", field_order=2)  # AV_FIELD_TT


def test_deinterlace(tmp_path: Path, capsys) -> None:
    src = tmp_path / "interlaced.mkv"
    write_interlaced(src)
    assert main(["probe", str(src)]) == 0
    assert "interlaced (tt)" in capsys.readouterr().out
    outs = {}
    for mode in ("off", "auto", "double"):
        out = tmp_path / f"{mode}.mkv"
        assert run(str(src), "-o", str(out), "--model", "bicubic", "--scale", "1", "--codec", "ffv1",
                   "--deinterlace", mode) == 0
        outs[mode] = out
    from vsr.media.decode import read_rgb

    off, auto, double = (read_rgb(outs[m]) for m in ("off", "auto", "double"))
    assert len(off) == len(auto) == 10 and len(double) == 20
    assert np.mean([combing(f) for f in auto]) < 0.5 * np.mean([combing(f) for f in off])
    times = [t for t, _ in __import__("media").video_frames(outs["double"])]
    assert times == [Fraction(i, 50) for i in range(20)]  # a frame per field, at field times


def test_image_sequences_in_and_out(tmp_path: Path) -> None:
    from media import make_image, video_frames
    from vsr.media.decode import read_rgb

    frames = tmp_path / "scan"
    frames.mkdir()
    deep = [make_image(frames / f"reel_{i:05d}.png", size=(20, 14), depth=16) for i in range(1001, 1005)]
    # Pattern in (numbering from 1001), 16-bit sequence out.
    out_pattern = tmp_path / "up" / "f_%04d.png"
    out_pattern.parent.mkdir()
    assert run(str(frames / "reel_%05d.png"), "-o", str(out_pattern), "--model", "bicubic", "--scale", "1") == 0
    written = sorted(p.name for p in out_pattern.parent.iterdir())
    assert written == ["f_0001.png", "f_0002.png", "f_0003.png", "f_0004.png"]  # no partial folder left
    first = read_rgb(out_pattern.parent / "f_0001.png")[0]
    assert first.dtype == np.uint16 and first.shape == (14, 20, 3)
    assert np.corrcoef(first.ravel(), deep[0].ravel())[0, 1] > 0.95  # the same picture, in order
    assert (first % 257 != 0).mean() > 0.5
    # Folder in with --fps, video out at that rate.
    video = tmp_path / "scan.mkv"
    assert run(str(frames), "--fps", "12", "-o", str(video), "--model", "bicubic", "--codec", "ffv1") == 0
    # Matroska counts milliseconds, so 1/12 s is stored as its nearest millisecond.
    assert [t for t, _ in video_frames(video)] == [Fraction(round(i * 1000 / 12), 1000) for i in range(4)]
    assert run(str(frames / "reel_%05d.png"), "-o", str(out_pattern), "--model", "bicubic") == 2  # exists


def test_decord_decoder_is_frame_exact(tmp_path: Path) -> None:
    pytest.importorskip("decord", reason="decord ships x86-64 wheels only")  # installed by the test extra there
    from vsr.media.decode import VideoReader

    src = tmp_path / "vfr.mp4"
    make_video(src, pts=[100, 140, 190, 200, 260, 300, 333, 400], size=(64, 32), audio_start=None)
    with VideoReader(src, decoder="decord") as r:
        got = [(f.pts, f.image) for f in r]
    with av.open(str(src)) as c:  # PyAV's frames with FFmpeg's default conversion, as decord converts
        want = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]
    assert [p for p, _ in got] == [p for p, _ in want]  # the container's pts, every frame once
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want))
    deep = tmp_path / "deep.mkv"
    write_yuv_patches(deep, 1, False, pix_fmt="yuv420p10le", depth=10)
    assert run(str(deep), "-o", str(tmp_path / "x.mkv"), "--model", "bicubic", "--decoder", "decord") == 2


def test_hdr10_metadata_carried(tmp_path: Path) -> None:
    from vsr.media.color import Hdr10

    src = tmp_path / "hdr.mkv"
    master = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-frames:v", "4", "-pix_fmt", "yuv420p10le",
           "-c:v", "libx265", "-x265-params", f"log-level=error:hdr10=1:master-display={master}:max-cll=1000,400:colorprim=bt2020:"
           "transfer=smpte2084:colormatrix=bt2020nc",
           "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", str(src))
    out = tmp_path / "out.mkv"
    assert run(str(src), "-o", str(out), "--model", "bicubic", "--scale", "1") == 0
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.pix_fmt, int(cc.color_trc), int(cc.color_primaries)) == ("hevc", "yuv420p10le", 16, 9)
        hdr = Hdr10.of(next(c.decode(c.streams.video[0])))
    assert hdr == Hdr10(master, "1000,400")


@pytest.mark.parametrize("ext", [".mov", ".mkv"])
def test_timecode_track_kept(tmp_path: Path, ext: str) -> None:
    base = tmp_path / "base.mp4"
    make_video(base, n=3, size=(32, 32), audio_start=0.0)
    src = tmp_path / "tc.mov"
    ffmpeg("-i", str(base), "-c", "copy", "-timecode", "01:02:03:04", str(src))
    out = tmp_path / f"out{ext}"
    assert run(str(src), "-o", str(out), "--model", "bicubic") == 0
    with av.open(str(out)) as c:
        tags = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}
        assert tags["timecode"] == "01:02:03:04"
        if ext == ".mov":  # QuickTime rebuilds its tmcd track from the tag
            assert [s.metadata.get("timecode") for s in c.streams if s.type == "data"] == ["01:02:03:04"]
