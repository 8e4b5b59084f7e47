"""Training data of the compact model: prepared photos, and a bank of degraded (HR, LR) pairs.

``prepare_data`` turns the photos that scripts/get_training_data.sh unpacked from the package
registries into ``train/`` and ``holdout/`` PNGs (DATA.md). ``PairBank`` keeps degraded pairs in
memory and re-draws a few of them after every step, so degradation cost (PyAV encodes included)
stays a small part of a step; slot ``i`` at version ``v`` is a pure function of ``(seed, i, v)``, so a
resumed run rebuilds exactly the bank it had.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vsr.errors import UsageError
from vsr.train import degrade as D

SCALE = 4  # the compact model's native scale: LR crops are crop / SCALE
PNG_COMPRESS_LEVEL = 1  # prepared PNGs: fast to write, still lossless


def _reduce(img: "Any", long_side: int) -> "Any":
    w, h = img.size
    if max(w, h) <= long_side:
        return img
    f = long_side / max(w, h)
    return img.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _name(rel: str) -> str:
    """Output stem of a source photo: its file stem, or for KDE's ``NAME/contents/images/WxH.jpg``
    layout (every file named by its resolution) the wallpaper's NAME."""
    path = Path(rel)
    if re.fullmatch(r"\d+x\d+", path.stem) and len(path.parts) >= 4 and path.parts[-3] == "contents":
        return path.parts[-4]
    return path.stem


def prepare_data(raw_dir: Path, out_dir: Path, data_cfg: dict[str, Any]) -> tuple[int, int]:
    """Write ``out_dir/train/*.png`` (each photo at every long side) and ``out_dir/holdout/*.png``."""
    counts = []
    for split in ("train", "holdout"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        sides = data_cfg["train_long_sides"] if split == "train" else [data_cfg["holdout_long_side"]]
        n = 0
        for rel in data_cfg[split]:
            src = raw_dir / rel
            if not src.is_file():
                raise UsageError(f"{src} is missing: run scripts/get_training_data.sh {raw_dir} first")
            img = Image.open(src).convert("RGB")
            for side in sides:
                small = _reduce(img, side)
                w, h = small.size
                small = small.crop((0, 0, w - w % SCALE, h - h % SCALE))
                small.save(out_dir / split / f"{_name(rel)}_{side}.png", compress_level=PNG_COMPRESS_LEVEL)
                n += 1
        counts.append(n)
    return counts[0], counts[1]


def load_images(folder: Path, min_side: int) -> list[torch.Tensor]:
    """All images in ``folder`` as (3, H, W) uint8 tensors, skipping those smaller than ``min_side``."""
    if not folder.is_dir():
        raise UsageError(f"no training data at {folder}: run scripts/get_training_data.sh, or pass --data DIR")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).contiguous() for p in files]
    images = [im for im in images if min(im.shape[-2:]) >= min_side]
    if not images:
        raise UsageError(f"no training images of at least {min_side} px in {folder}")
    return images


def _augment(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 8 flips/rotations of the square, on the last two dims."""
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    if code & 4:
        x = x.transpose(-1, -2)
    return x


@contextmanager
def single_thread() -> Iterator[None]:
    """Degradations are many small ops: with more threads they only spin (10× slower on a busy box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class PairBank:
    """Degraded (HR, LR) uint8 pairs; slot ``i`` at version ``v`` is a pure function of (seed, i, v)."""

    def __init__(self, images: list[torch.Tensor], size: int, crop: int, seed: int, degrade_cfg: dict[str, Any]) -> None:
        self.images, self.size, self.crop, self.seed, self.cfg = images, size, crop, seed, degrade_cfg
        self.hr = torch.empty((size, 3, crop, crop), dtype=torch.uint8)
        self.lr = torch.empty((size, 3, crop // SCALE, crop // SCALE), dtype=torch.uint8)

    def draw(self, slot: int, version: int) -> None:
        rng = np.random.default_rng([self.seed, slot, version])
        img = self.images[int(rng.integers(len(self.images)))]
        h, w = img.shape[-2:]
        y, x = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        hr = _augment(img[:, y : y + self.crop, x : x + self.crop], int(rng.integers(8))).float() / 255.0
        lr = D.degrade(hr, rng, self.cfg)
        self.hr[slot] = (hr * 255).round().to(torch.uint8)
        self.lr[slot] = (lr * 255).round().to(torch.uint8)

    def fill(self, step: int, refresh: int, progress: bool) -> None:
        """The bank as it stood after ``step`` steps: slot i holds its latest version."""
        drawn = step * refresh  # refreshes so far walk the slots round-robin
        with single_thread():
            for i in tqdm(range(self.size), desc="degrading", disable=not progress, leave=False):
                self.draw(i, (drawn - i - 1) // self.size + 1 if drawn > i else 0)

    def refresh(self, step: int, refresh: int) -> None:
        with single_thread():
            for j in range(step * refresh, (step + 1) * refresh):
                self.draw(j % self.size, j // self.size + 1)

    def batch(self, step: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([seed, 1_000_003, step])
        idx = torch.from_numpy(rng.choice(self.size, size=batch, replace=False))
        code = int(rng.integers(8))
        return _augment(self.hr[idx], code), _augment(self.lr[idx], code)
