"""Image sequences: ``frame_%06d.png`` patterns, or a folder of frames with ``--fps``.

Input goes through FFmpeg's image2 demuxer (so PNG, TIFF, JPEG, DPX, EXR decode as FFmpeg reads
them, 16-bit kept); the writer side is ``writer.SequenceWriter``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import av

from vsr.errors import InputError

PATTERN = re.compile(r"%0?(\d*)d")  # printf-style frame number, as FFmpeg's image2 takes it
DEFAULT_FPS = 25.0  # frames per second of a sequence when --fps is not given
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dpx", ".exr", ".bmp", ".webp")


def is_pattern(path: str | Path) -> bool:
    return bool(PATTERN.search(Path(path).name))


def matches(pattern: Path) -> list[tuple[int, Path]]:
    """(frame number, file) for each existing file that the pattern names, sorted by number."""
    m = PATTERN.search(pattern.name)
    assert m is not None
    regex = re.compile(re.escape(pattern.name[: m.start()]) + r"(\d+)" + re.escape(pattern.name[m.end() :]) + "$")
    if not pattern.parent.is_dir():
        return []
    found = [(int(g.group(1)), p) for p in pattern.parent.iterdir() if (g := regex.match(p.name))]
    return sorted(found)


def sequence_source(path: Path, fps: float | None) -> tuple[str, dict[str, str], int]:
    """The image2 URL and options for a pattern or a folder of frames, and how many frames it has."""
    rate = str(fps or DEFAULT_FPS)
    if is_pattern(path):
        found = matches(path)
        if not found:
            raise InputError(f"{path}: no file matches this frame pattern")
        return str(path), {"framerate": rate, "start_number": str(found[0][0])}, len(found)
    exts = Counter(p.suffix.lower() for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not exts:
        raise InputError(f"{path}: folder holds no image frames ({', '.join(IMAGE_EXTENSIONS)})")
    ext = exts.most_common(1)[0][0]
    glob = str(path / f"*{ext}").replace("[", "[[]")
    return glob, {"framerate": rate, "pattern_type": "glob"}, exts[ext]


def is_sequence(path: Path, fps: float | None) -> bool:
    """A frame pattern, or a folder read as one clip (only when --fps says so)."""
    return is_pattern(path) or (fps is not None and path.is_dir())


def open_sequence(path: Path, fps: float | None) -> tuple[av.container.InputContainer, int]:
    url, options, count = sequence_source(path, fps)
    try:
        return av.open(url, "r", format="image2", options=options), count
    except (av.error.FFmpegError, ValueError) as e:
        raise InputError(f"{path}: cannot read the image sequence ({e})") from e


def sequence_name(path: Path) -> str:
    """A readable stem for outputs made from a sequence: the folder name, or the pattern without %d."""
    if is_pattern(path):
        return PATTERN.sub("", path.stem).rstrip("_-. ") or path.parent.name
    return path.name


def format_number(name: str, n: int) -> str:
    """The frame number ``n`` as the pattern in ``name`` writes it."""
    m = PATTERN.search(name)
    assert m is not None
    return f"{n:0{int(m.group(1) or 0)}d}"


def frame_path(pattern: Path, n: int) -> Path:
    m = PATTERN.search(pattern.name)
    assert m is not None
    return pattern.with_name(pattern.name[: m.start()] + format_number(pattern.name, n) + pattern.name[m.end() :])
