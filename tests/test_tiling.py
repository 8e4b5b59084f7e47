"""Tile plans, padding and feathered weights (vsr.upscale.tiling), without the engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr.upscale import tiling


@pytest.mark.parametrize("h,w,m", [(16, 16, 16), (17, 31, 16), (37, 53, 8), (5, 3, 16), (1, 2, 4), (64, 64, 16)])
def test_pad_to_multiple_reflects_and_keeps_content(h: int, w: int, m: int) -> None:
    x = torch.rand(1, 3, h, w)
    y = tiling.pad_to_multiple(x, m)
    assert y.shape[-2] % m == 0 and y.shape[-1] % m == 0
    assert y.shape[-2] - h < m and y.shape[-1] - w < m
    assert torch.equal(y[..., :h, :w], x)
    if h > 1 and w > 1 and y.shape[-2] - h < h and y.shape[-1] - w < w:
        assert torch.equal(y, F.pad(x, (0, y.shape[-1] - w, 0, y.shape[-2] - h), mode="reflect"))


def test_pad_to_multiple_reaches_a_minimum_size() -> None:
    y = tiling.pad_to_multiple(torch.rand(1, 3, 20, 20), 16, min_h=128, min_w=64)
    assert y.shape[-2:] == (128, 64)


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (128, 128, 16), (129, 128, 16), (1088, 128, 16),
                                                 (1920, 128, 16), (50, 64, 16), (96, 32, 0), (33, 32, 16)])
def test_axis_starts_fixed_size_cover_and_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tiling.axis_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length  # edge tile shifted inward, not shrunk
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0 < g <= tile - overlap for g in gaps)  # every neighbour overlaps by >= overlap
    assert len(starts) == -(-(length - tile) // (tile - overlap)) + 1  # no more tiles than needed


@pytest.mark.parametrize("length,tile,overlap,scale", [(100, 32, 8, 4), (1088, 128, 16, 4), (33, 32, 16, 1),
                                                       (96, 32, 0, 2), (300, 64, 32, 4)])
def test_axis_weights_sum_to_one_and_feather(length: int, tile: int, overlap: int, scale: int) -> None:
    starts = tiling.axis_starts(length, tile, overlap)
    w = tiling.axis_weights(starts, tile, length, scale)
    total = torch.zeros(length * scale)
    for i, s in enumerate(starts):
        total[s * scale : s * scale + tile * scale] += w[i]
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)
    assert bool((w >= 0).all())
    zero = int(overlap * scale * tiling.FEATHER_ZERO_FRACTION)
    if len(starts) > 1 and zero:
        assert float(w[0, -zero:].abs().max()) == 0.0  # interior side: outer part ignored
        assert float(w[1, :zero].abs().max()) == 0.0
        assert float(w[0, 0]) == 1.0 and float(w[-1, -1]) == 1.0  # frame borders: full weight


def test_feather_is_smooth_across_an_overlap() -> None:
    starts = tiling.axis_starts(64, 32, 16)  # two tiles overlapping by exactly 16
    w = tiling.axis_weights(starts, 32, 64, 1)
    ramp = w[1, :16]
    assert bool((ramp[1:] >= ramp[:-1]).all())  # monotone rise, no hard seam
    assert 0 < float(ramp[8]) < 1


def test_plan_whole_frame_and_rounding() -> None:
    p = tiling.make_plan(37, 53, tile=0, overlap=16, multiple=16, scale=4)
    assert (p.pad_h, p.pad_w, p.tile_h, p.tile_w, p.count) == (48, 64, 48, 64, 1)
    p = tiling.make_plan(300, 500, tile=100, overlap=16, multiple=16, scale=4)
    assert (p.tile_h, p.tile_w) == (112, 112)  # rounded up to the model's multiple
    p = tiling.make_plan(40, 500, tile=128, overlap=16, multiple=8, scale=4)
    assert (p.tile_h, p.tile_w) == (40, 128)  # a short axis is one tile of its own size
    with pytest.raises(ValueError):
        tiling.make_plan(100, 100, tile=32, overlap=17, multiple=1, scale=4)


def test_blend_of_constant_tiles_is_constant() -> None:
    p = tiling.make_plan(70, 90, tile=32, overlap=8, multiple=1, scale=2)
    acc = torch.zeros(3, p.pad_h * 2, p.pad_w * 2)
    idx = list(range(p.count))
    tiling.blend(acc, torch.full((p.count, 3, p.tile_h * 2, p.tile_w * 2), 0.5), p, idx)
    assert torch.allclose(acc, torch.full_like(acc, 0.5), atol=1e-6)


def test_extract_takes_the_planned_boxes() -> None:
    p = tiling.make_plan(40, 40, tile=16, overlap=4, multiple=1, scale=1)
    frame = torch.arange(40 * 40, dtype=torch.float32).reshape(1, 1, 40, 40).expand(1, 3, 40, 40)
    tiles = tiling.extract(frame, p, list(range(p.count)))
    assert tiles.shape == (p.count, 3, 16, 16)
    y, x = p.box(p.count - 1)
    assert (y + 16, x + 16) == (40, 40)
    assert torch.equal(tiles[-1], frame[0, :, y : y + 16, x : x + 16])


@pytest.mark.parametrize("tiles,batch,expect", [(170, 16, 1), (40, 32, 4), (1, 16, 16), (6, 4, 2), (12, 12, 1),
                                                (7, 1, 1)])
def test_frames_per_call_fills_batches(tiles: int, batch: int, expect: int) -> None:
    assert tiling.frames_per_call(tiles, batch) == expect
