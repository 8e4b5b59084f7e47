"""The Upscaler: padding, tiling, batching, precision, NaN guard, OOM, colour fix, output format.

Tiny convolution models defined here stand in for AdcSR; CUDA-only variants are marked `cuda`
and every behaviour they check also has a CPU test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vsr.upscale import convert, engine
from vsr.upscale import tiling
from vsr.upscale.engine import Upscaler
from vsr.upscale.device import resolve_device, resolve_precision
from vsr.errors import ProcessingError, UsageError
from vsr.models import ModelDescriptor, load_model

HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")


class TinyConv(nn.Module):
    """Two 3x3 convolutions (receptive radius 2 LR px) and a pixel shuffle: x4, conv-only."""

    scale = 4

    def __init__(self, multiple: int = 1, seed: int = 0) -> None:
        super().__init__()
        self.multiple = multiple
        self.descriptor = ModelDescriptor("tinyconv", self.scale, multiple)
        g = torch.Generator().manual_seed(seed)
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 48, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % self.multiple == 0 and x.shape[-1] % self.multiple == 0
        self.shapes.append(tuple(x.shape))
        return torch.tanh(nn.functional.pixel_shuffle(self.c2(torch.relu(self.c1(x))), 4))


class NanInLowPrecision(TinyConv):
    """Non-finite output for tiles holding a pixel brighter than ``mark`` (always, or only when the
    input is not fp32)."""

    def __init__(self, mark: float = 0.99, always: bool = False) -> None:
        super().__init__()
        self.mark, self.always = mark, always

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        hit = x.flatten(1).amax(1) > self.mark
        if x.dtype != torch.float32 or self.always:
            y = torch.where(hit[:, None, None, None], torch.full_like(y, float("nan")), y)
        return y


class OomAbove(TinyConv):
    """Raises out-of-memory (as CUDA would) for batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


def frames(n: int, h: int, w: int, seed: int = 0, dtype=np.uint8) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    return [rng.integers(0, peak // 2, (h, w, 3), dtype=dtype) for _ in range(n)]  # no pixel at the mark


@pytest.fixture
def float_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the engine return float frames (H, W, 3) in [-1, 1] instead of quantised ones."""
    monkeypatch.setattr(engine, "quantise", lambda chw, dtype, value_range: chw.float().permute(1, 2, 0).contiguous())


def run(model: nn.Module, fr: list[np.ndarray], out: tuple[int, int] | None = None, **kw) -> tuple[list, Upscaler]:
    up = Upscaler(model, **kw)
    h, w = fr[0].shape[:2]
    return up.upscale(fr, out or (w * model.scale, h * model.scale)), up


# -- tiling through the engine --------------------------------------------------------------------


def test_model_sees_only_the_tile_shape_and_expected_calls() -> None:
    model = TinyConv()
    fr = frames(3, 100, 150)
    _, up = run(model, fr, tile=32, tile_overlap=8, batch=4, pad_batches=True)
    per_frame = len(tiling.axis_starts(100, 32, 8)) * len(tiling.axis_starts(150, 32, 8))
    assert set(model.shapes) == {(4, 3, 32, 32)}
    assert len(model.shapes) == math.ceil(3 * per_frame / 4) == up.stats.forward_calls
    assert up.stats.tiles == 3 * per_frame and up.stats.frames == 3
    assert up.stats.filler_tiles == len(model.shapes) * 4 - 3 * per_frame


@pytest.mark.parametrize("h,w,multiple", [(100, 150, 1), (37, 53, 1), (16, 16, 1), (45, 77, 8), (129, 66, 16)])
def test_tiled_equals_untiled_for_a_small_receptive_field(float_out, h: int, w: int, multiple: int) -> None:
    fr = frames(2, h, w, seed=h)
    whole, _ = run(TinyConv(multiple), fr, tile=0, batch=1)
    tiled, up = run(TinyConv(multiple), fr, tile=32, tile_overlap=16, batch=3)
    for a, b in zip(whole, tiled):
        assert a.shape == (h * 4, w * 4, 3)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["bicubic", "lanczos"])
def test_registry_models_tile_seamlessly(float_out, name: str) -> None:
    fr = frames(1, 70, 90)
    whole, _ = run(load_model(name), fr, tile=0, batch=1)
    tiled, _ = run(load_model(name), fr, tile=32, tile_overlap=16, batch=2)
    np.testing.assert_allclose(whole[0], tiled[0], atol=1e-5, rtol=0)


def test_padding_is_reflect_and_cropped(float_out) -> None:
    fr = frames(1, 37, 21)
    model = TinyConv(multiple=16)
    (out,), _ = run(model, fr, tile=0)
    assert model.shapes == [(1, 3, 48, 32)]
    x = convert.to_tensor(fr[0], torch.device("cpu"))
    x = nn.functional.pad(x, (0, 11, 0, 11), mode="reflect")
    ref = TinyConv(multiple=16)(x)[0, :, : 37 * 4, : 21 * 4].permute(1, 2, 0).detach().numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("h,w", [(16, 16), (17, 33), (5, 7)])
def test_small_and_odd_sizes(h: int, w: int) -> None:
    (out,), _ = run(TinyConv(multiple=16), frames(1, h, w), tile=128, tile_overlap=16)
    assert out.shape == (h * 4, w * 4, 3) and out.dtype == np.uint8


# -- batching ---------------------------------------------------------------------------------------


def test_batches_across_frames_are_fixed_and_equal_to_batch_one(float_out, monkeypatch: pytest.MonkeyPatch) -> None:
    # oneDNN picks batch-size-dependent convolution kernels (~1.5e-6 apart for this model); the
    # reference kernels isolate what this test is about: the engine's batching itself is exact.
    fr = frames(3, 60, 70)
    model = TinyConv()
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    one, up1 = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=1)
    seven, up7 = run(model, fr, tile=32, tile_overlap=8, batch=7, pad_batches=True)
    assert set(up7.stats.batch_sizes) == {7} and {s[0] for s in model.shapes} == {7}
    assert up7.stats.tiles == up1.stats.tiles == 3 * 9  # one batch spans several frames
    assert up7.stats.filler_tiles == 1  # 27 tiles: three full batches and one filled up
    for a, b in zip(one, seven):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_short_last_batch_runs_unfilled_without_static_shapes() -> None:
    model = TinyConv()
    _, up = run(model, frames(3, 60, 70), tile=32, tile_overlap=8, batch=7)
    assert not up.pad_batches  # CPU, no graphs, no compile
    assert [s[0] for s in model.shapes] == [7, 7, 7, 6] and up.stats.filler_tiles == 0


def test_frames_per_call_fills_batches() -> None:
    up = Upscaler(TinyConv(), tile=32, tile_overlap=8, batch=8)
    k = up.frames_per_call(70, 60)  # 3 x 3 tiles per frame
    filler = math.ceil(k * 9 / 8) * 8 - k * 9
    assert k >= 1 and filler <= tiling.BATCH_WASTE_TARGET * k * 9
    assert Upscaler(TinyConv(), tile=0, batch=4).frames_per_call(64, 64) == 4


# -- precision and the NaN guard ----------------------------------------------------------------


def test_precision_resolution() -> None:
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    assert resolve_precision("auto", torch.device("cuda")) == torch.float16
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_precision("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(UsageError):
        resolve_precision("fp8", torch.device("cpu"))


def test_bf16_runs_close_to_fp32() -> None:
    fr = frames(1, 40, 40)
    (a,), _ = run(TinyConv(), fr, tile=32, tile_overlap=8, precision="fp32")
    (b,), up = run(TinyConv(), fr, tile=32, tile_overlap=8, precision="bf16")
    assert up.dtype == torch.bfloat16 and next(up.model.parameters()).dtype == torch.bfloat16
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 6


def test_non_finite_tiles_are_recomputed_in_fp32_and_counted() -> None:
    fr = frames(2, 60, 70)
    fr[1][30, 40] = 255  # only the tiles holding this pixel go NaN in bf16
    p = tiling.make_plan(60, 70, tile=32, overlap=8, multiple=1, scale=4)
    marked = sum(1 for i in range(p.count) if p.box(i)[0] <= 30 < p.box(i)[0] + 32 and p.box(i)[1] <= 40 < p.box(i)[1] + 32)
    guarded, up = run(NanInLowPrecision(), fr, tile=32, tile_overlap=8, batch=4, precision="bf16")
    clean, _ = run(NanInLowPrecision(), fr, tile=32, tile_overlap=8, batch=4, precision="fp32")
    assert marked >= 1 and up.stats.nan_retries == marked
    for a, b in zip(guarded, clean):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 6  # bf16 elsewhere, fp32 at the marked tiles


def test_non_finite_in_fp32_stops_the_run() -> None:
    fr = frames(1, 40, 40)
    fr[0][5, 5] = 255
    with pytest.raises(ProcessingError, match="even in fp32"):
        run(NanInLowPrecision(always=True), fr, tile=32, tile_overlap=8, precision="bf16")
    with pytest.raises(ProcessingError, match="non-finite values in fp32"):
        run(NanInLowPrecision(always=True), fr, tile=32, tile_overlap=8, precision="fp32")


def test_a_nan_frame_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_color_fix", lambda name: (lambda sr, lr: sr * float("nan")))
    with pytest.raises(ProcessingError, match="non-finite"):
        run(TinyConv(), frames(1, 20, 20), tile=0, color_fix="adain")


# -- out of memory ------------------------------------------------------------------------------------


def test_oom_halves_the_batch_and_skips_nothing(float_out) -> None:
    fr = frames(2, 60, 70)
    out, up = run(OomAbove(2), fr, tile=32, tile_overlap=8, batch=8, pad_batches=True)
    ref, _ = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=2)
    assert up.stats.oom_halvings == 2 and up.batch == 2 and set(up.stats.batch_sizes) == {2}
    assert up.stats.tiles == 2 * 9
    for a, b in zip(out, ref):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_oom_at_batch_one_is_a_clear_error() -> None:
    with pytest.raises(ProcessingError, match="out of memory"):
        run(OomAbove(0), frames(1, 40, 40), tile=32, tile_overlap=8, batch=2)


def test_oom_outside_the_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(engine, "resize", no_memory)
    with pytest.raises(ProcessingError, match="outside the model"):
        run(TinyConv(), frames(1, 20, 20), tile=0)


# -- colour fix, resize, output format -----------------------------------------------------------


def test_colour_fix_runs_once_on_the_whole_stitched_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple] = []

    def fix(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(sr.shape), tuple(lr.shape)))
        return sr

    monkeypatch.setattr(engine, "_color_fix", lambda name: fix)
    run(TinyConv(multiple=8), frames(2, 45, 77), (77 * 2, 45 * 2), tile=32, tile_overlap=8, color_fix="adain")
    assert seen == [((1, 3, 180, 308), (1, 3, 45, 77))] * 2  # cropped, before the resize


def test_real_colour_fixes_apply_to_the_whole_frame(float_out) -> None:
    from vsr.upscale import colorfix
    fr = frames(1, 40, 48)
    (raw,), _ = run(TinyConv(), fr, tile=0)
    sr = torch.from_numpy(raw).permute(2, 0, 1)[None]
    lr = convert.to_tensor(fr[0], torch.device("cpu"))
    for name in colorfix.COLOR_FIXES:
        (out,), _ = run(TinyConv(), fr, tile=32, tile_overlap=16, color_fix=name)
        ref = colorfix.apply_color_fix(name, sr, lr)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(out, ref, atol=1e-4)  # statistics of the stitched frame, not per tile


@pytest.mark.parametrize("out_size", [(96, 80), (48, 40), (100, 70)])
def test_resize_to_the_requested_size(float_out, out_size: tuple[int, int]) -> None:
    fr = frames(1, 40, 48)
    (native,), _ = run(TinyConv(), fr, tile=32, tile_overlap=16)
    (out,), _ = run(TinyConv(), fr, out_size, tile=32, tile_overlap=16)
    ref = convert.resize(torch.from_numpy(native).permute(2, 0, 1)[None], out_size[1], out_size[0])
    assert out.shape == (out_size[1], out_size[0], 3)
    np.testing.assert_allclose(out, ref[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_uint16_in_uint16_out_contiguous() -> None:
    fr = frames(2, 20, 24, dtype=np.uint16)
    out, _ = run(load_model("bicubic"), fr, tile=16, tile_overlap=4, batch=3)
    for o in out:
        assert o.dtype == np.uint16 and o.shape == (80, 96, 3) and o.flags["C_CONTIGUOUS"]
    assert abs(float(out[0].astype(np.float64).mean()) - float(fr[0].astype(np.float64).mean())) < 300


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        Upscaler(TinyConv(), tile=32, tile_overlap=20)
    with pytest.raises(UsageError):
        Upscaler(TinyConv(), batch=0)
    up = Upscaler(TinyConv(), tile=0)
    with pytest.raises(ValueError):
        up.upscale([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], (32, 32))
    with pytest.raises(ValueError):
        up.upscale([np.zeros((8, 8), np.uint8)], (32, 32))
    assert up.upscale([], (32, 32)) == []


def test_device_strings() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UsageError):
        resolve_device("tpu-ish")
    if not HAS_CUDA:
        for spec in ("cuda", "cuda:1"):
            with pytest.raises(UsageError):
                resolve_device(spec)
    if not (torch.backends.mps.is_available()):
        with pytest.raises(UsageError):
            resolve_device("mps")


@pytest.mark.slow  # torch.compile takes about a minute on this CPU
def test_compile_matches_eager_and_fills_batches() -> None:
    fr = frames(2, 60, 70)
    compiled, up = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=4, compile=True)
    eager, _ = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=4)
    assert up.pad_batches and set(up.stats.batch_sizes) == {4}  # one static shape for the compiler
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(compiled, eager))


# -- CUDA variants (skipped without a GPU; the CPU tests above cover the same behaviour) ----------


@cuda
@needs_cuda
def test_cuda_graphs_match_eager_and_fp16_is_default() -> None:
    fr = frames(3, 70, 90)
    eager, _ = run(TinyConv(), fr, device="cuda", precision="fp32", cuda_graphs=False, tile=32, tile_overlap=8, batch=4)
    graph, up = run(TinyConv(), fr, device="cuda:0", precision="fp32", cuda_graphs=True, tile=32, tile_overlap=8, batch=4)
    assert up.stats.graph_captures == 1
    for a, b in zip(eager, graph):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    half, up16 = run(TinyConv(), fr, device="cuda", tile=32, tile_overlap=8, batch=4)
    assert up16.dtype == torch.float16 and up16.channels_last
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 4 for a, b in zip(eager, half))


@cuda
@needs_cuda
def test_cuda_compile_with_graphs_matches_eager() -> None:
    fr = frames(2, 70, 90)
    kw = dict(device="cuda", precision="fp32", tile=32, tile_overlap=8, batch=4)
    eager, _ = run(TinyConv(), fr, cuda_graphs=False, **kw)
    both, up = run(TinyConv(), fr, compile=True, cuda_graphs=True, **kw)
    assert up.stats.graph_captures == 1
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(eager, both))


@cuda
@needs_cuda
def test_cuda_nan_guard_and_oom() -> None:
    fr = frames(1, 60, 70)
    fr[0][30, 40] = 65535 // 257
    _, up = run(NanInLowPrecision(), fr, device="cuda", tile=32, tile_overlap=8, batch=4)
    assert up.stats.nan_retries >= 1
    _, up = run(OomAbove(2), fr, device="cuda", tile=32, tile_overlap=8, batch=8, cuda_graphs=False)
    assert up.stats.oom_halvings == 2


def test_frame_sizes_may_alternate_between_calls() -> None:
    """One Upscaler serves files of different sizes in turn (a `vsr run` of several inputs, a Ray
    actor taking segments of several videos): sizes a, b, a again reuse the right buffers."""
    up = Upscaler(TinyConv(), device="cpu", tile=0)
    small, large = np.full((32, 48, 3), 90, np.uint8), np.full((40, 56, 3), 160, np.uint8)
    first = up.upscale([small], (192, 128))[0]
    assert up.upscale([large], (224, 160))[0].shape == (160, 224, 3)
    assert np.array_equal(up.upscale([small], (192, 128))[0], first)
