"""Tile plans: reflect padding, fixed-shape tiles, feathered blending in output space.

A frame of any size is padded (reflect) to the model's ``multiple`` and cut into tiles that all have
the same shape: along each axis the tiles are spread evenly so that neighbours overlap by at least
``overlap`` LR pixels, and the last tile ends exactly at the frame edge (edge tiles are shifted inward,
never shrunk). A frame smaller than the tile along an axis is one tile of the frame's (padded) size
there, so the tile shape is fixed per frame size, which is what batching and CUDA graphs need.

Blending happens in output space with separable weights. Across the overlap between two neighbours,
each side has zero weight on the outer ``FEATHER_ZERO_FRACTION`` of the overlap (the pixels a
convolution sees the tile border from), then a linear ramp over the middle, then full weight; the
frame's own borders get full weight. Per axis the weights are normalised to sum to one at every output
pixel, so their outer products sum to one over the whole frame. Consequence, tested: a model whose
receptive radius (LR px) is at most ``overlap * FEATHER_ZERO_FRACTION`` gives exactly the untiled
result, whatever the tile size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Default tile, LR px. AdcSR's self-attention grows with the square of the tile area: on an H200, with
# the authors' modules (docs/adcsr.md; vsr's own engine is not measured on a GPU yet), 256² tiles cost
# 12.4 ms per 128²-equivalent against ~4 ms at 128², while tiles under 128 spend a
# growing share on overlap ((T / (T - overlap))² = 1.31 at 128, 1.78 at 64). AdcSR was trained on
# 128² LR crops. On this CPU (benchmarks/README.md) reduced-width models were cheapest per frame at
# 96-128; the GPU session's tile sweep (benchmarks/gpu_session.py) is what should confirm or move this.
DEFAULT_TILE = 128
DEFAULT_TILE_OVERLAP = 16  # LR px; 64 output px of feather at x4, zero weight on the outer 4 LR px
FEATHER_ZERO_FRACTION = 0.25  # share of each overlap, per side, where a tile's weight is zero
MAX_FRAMES_PER_CALL = 16  # upper bound for frames_per_call (host memory for finished frames)
BATCH_WASTE_TARGET = 0.05  # accept the fewest frames per call whose filler tiles are <= 5 % of work


def pad_to_multiple(x: torch.Tensor, multiple: int, min_h: int = 0, min_w: int = 0) -> torch.Tensor:
    """Reflect-pad ``x`` (N, C, H, W) at the bottom/right to multiples of ``multiple`` (and at least
    ``min_h`` x ``min_w``). Pads wider than the image are done in steps; a 1-pixel axis replicates."""
    h, w = x.shape[-2:]
    target_h = max(math.ceil(h / multiple) * multiple, min_h)
    target_w = max(math.ceil(w / multiple) * multiple, min_w)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        h, w = x.shape[-2:]
        ph, pw = min(target_h - h, h - 1), min(target_w - w, w - 1)
        if ph <= 0 and h < target_h or pw <= 0 and w < target_w:
            return F.pad(x, (0, target_w - w, 0, target_h - h), mode="replicate")
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of fixed-size tiles covering ``[0, length)``, evenly spread, neighbours
    overlapping by at least ``overlap``; the first starts at 0, the last ends at ``length``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    n = math.ceil((length - tile) / stride) + 1
    # Gaps are the differences of round(i * span / (n-1)) with span/(n-1) <= stride: all <= stride.
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def axis_weights(starts: list[int], tile: int, length: int, scale: int) -> torch.Tensor:
    """Feathered 1-D weights (n, tile*scale) in output pixels, normalised to sum to one along the
    axis of ``length*scale`` output pixels (see the module docstring)."""
    n, t = len(starts), tile * scale
    w = torch.ones(n, t, dtype=torch.float64)
    for i in range(n - 1):
        ov = (starts[i] + tile - starts[i + 1]) * scale  # this pair's overlap, output px
        zero = math.floor(ov * FEATHER_ZERO_FRACTION)
        ramp_len = ov - 2 * zero
        ramp = (torch.arange(ramp_len, dtype=torch.float64) + 0.5) / ramp_len
        rising = torch.cat([torch.zeros(zero, dtype=torch.float64), ramp, torch.ones(zero, dtype=torch.float64)])
        w[i + 1, :ov] = torch.minimum(w[i + 1, :ov], rising)  # left side of the right tile
        w[i, t - ov :] = torch.minimum(w[i, t - ov :], rising.flip(0))  # right side of the left tile
    total = torch.zeros(length * scale, dtype=torch.float64)
    for i, s in enumerate(starts):
        total[s * scale : s * scale + t] += w[i]
    assert bool((total > 0).all()), "tile weights leave a gap"  # guaranteed by overlap <= tile/2
    for i, s in enumerate(starts):
        w[i] /= total[s * scale : s * scale + t]
    return w.float()


@dataclass(frozen=True)
class TilePlan:
    """How one frame size is cut. Sizes in LR pixels; ``pad_h``/``pad_w`` is the padded frame."""

    height: int  # the frame as given
    width: int
    pad_h: int  # after reflect padding to the model's multiple (and at least the tile)
    pad_w: int
    tile_h: int  # every tile has this shape
    tile_w: int
    scale: int
    ys: tuple[int, ...]  # tile row starts
    xs: tuple[int, ...]  # tile column starts
    wy: torch.Tensor  # (len(ys), tile_h*scale) feather weights
    wx: torch.Tensor  # (len(xs), tile_w*scale)

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    def box(self, index: int) -> tuple[int, int]:
        """(y, x) LR start of tile ``index`` (row-major)."""
        return self.ys[index // len(self.xs)], self.xs[index % len(self.xs)]

    def to(self, device: torch.device) -> "TilePlan":
        return TilePlan(**{**self.__dict__, "wy": self.wy.to(device), "wx": self.wx.to(device)})


def make_plan(height: int, width: int, *, tile: int, overlap: int, multiple: int, scale: int) -> TilePlan:
    """Plan for frames of ``height`` x ``width``; ``tile`` 0 means one whole-frame tile. ``tile`` is
    rounded up to ``multiple``; along an axis shorter than the tile the tile is the padded axis."""
    pad_h = math.ceil(height / multiple) * multiple
    pad_w = math.ceil(width / multiple) * multiple
    if tile <= 0:
        tile_h, tile_w = pad_h, pad_w
    else:
        if 2 * overlap > tile:
            raise ValueError(f"tile overlap {overlap} must be at most half the tile {tile}")
        t = math.ceil(tile / multiple) * multiple
        tile_h, tile_w = min(t, pad_h), min(t, pad_w)
    ys = axis_starts(pad_h, tile_h, overlap)
    xs = axis_starts(pad_w, tile_w, overlap)
    return TilePlan(
        height, width, pad_h, pad_w, tile_h, tile_w, scale, tuple(ys), tuple(xs),
        axis_weights(ys, tile_h, pad_h, scale), axis_weights(xs, tile_w, pad_w, scale),
    )  # fmt: skip


def extract(frame: torch.Tensor, plan: TilePlan, indices: list[int]) -> torch.Tensor:
    """Tiles ``indices`` of a padded frame (1, 3, pad_h, pad_w) as one (k, 3, tile_h, tile_w) batch."""
    th, tw = plan.tile_h, plan.tile_w
    crops = []
    for i in indices:
        y, x = plan.box(i)
        crops.append(frame[:, :, y : y + th, x : x + tw])
    return torch.cat(crops, dim=0)


def blend(acc: torch.Tensor, tiles: torch.Tensor, plan: TilePlan, indices: list[int]) -> None:
    """Add weighted model outputs ``tiles`` (k, 3, tile_h*s, tile_w*s) into ``acc`` (3, pad_h*s,
    pad_w*s) at the places of tiles ``indices``; ``plan`` holds weights on ``acc``'s device. Per tile,
    one product of its two 1-D weight rows (views of the plan's: no index tensor goes to the device)
    and one fused multiply-add into the accumulator."""
    s, nx = plan.scale, len(plan.xs)
    oh, ow = plan.tile_h * s, plan.tile_w * s
    for k, i in enumerate(indices):
        y, x = plan.box(i)
        weight = plan.wy[i // nx][:, None] * plan.wx[i % nx][None, :]  # (tile_h*s, tile_w*s)
        acc[:, y * s : y * s + oh, x * s : x * s + ow].addcmul_(tiles[k], weight)


def frames_per_call(tiles_per_frame: int, batch: int) -> int:
    """Fewest consecutive frames whose tiles fill fixed-size batches with little filler: the first
    k whose padded share is within BATCH_WASTE_TARGET, else the k with the least waste."""
    best_k, best_waste = 1, 1.0
    k_max = max(MAX_FRAMES_PER_CALL, math.ceil(batch / tiles_per_frame))
    for k in range(1, k_max + 1):
        tiles = k * tiles_per_frame
        waste = (math.ceil(tiles / batch) * batch - tiles) / tiles
        if waste <= BATCH_WASTE_TARGET:
            return k
        if waste < best_waste - 1e-12:
            best_k, best_waste = k, waste
    return best_k
