"""The Upscaler: padding, tiling, batching, precision, NaN guard, OOM, colour fix, output format.

Tiny convolution models defined here stand in for AdcSR; CUDA-only variants are marked `cuda`
and every behaviour they check also has a CPU test.
"""

from __future__ import annotations

import logging
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
        self.descriptor = ModelDescriptor("tinyconv", self.scale, multiple, color_fix="none")  # raw unless asked
        g = torch.Generator().manual_seed(seed)
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 48, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # no state: a compiled copy never recompiles
        return torch.tanh(nn.functional.pixel_shuffle(self.c2(torch.relu(self.c1(x))), 4))


def shapes_seen(model: nn.Module) -> list[tuple[int, ...]]:
    """The input shapes of every call of ``model`` from now on (a forward pre-hook: eager only),
    each checked against the model's multiple."""
    seen: list[tuple[int, ...]] = []

    def hook(module: nn.Module, args: tuple) -> None:
        x = args[0]
        assert x.shape[-2] % module.multiple == 0 and x.shape[-1] % module.multiple == 0
        seen.append(tuple(x.shape))

    model.register_forward_pre_hook(hook)
    return seen


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
    def as_float(chw, dtype, value_range, affine=None, in_place=False):
        y = chw.float() if affine is None else chw.float() * affine[0] + affine[1]
        return y.permute(1, 2, 0).contiguous()

    monkeypatch.setattr(engine, "quantise", as_float)


def run(model: nn.Module, fr: list[np.ndarray], out: tuple[int, int] | None = None, **kw) -> tuple[list, Upscaler]:
    up = Upscaler(model, **kw)
    h, w = fr[0].shape[:2]
    return up.upscale(fr, out or (w * model.scale, h * model.scale)), up


# -- tiling through the engine --------------------------------------------------------------------


def test_model_sees_only_the_tile_shape_and_expected_calls() -> None:
    model = TinyConv()
    shapes = shapes_seen(model)
    fr = frames(3, 100, 150)
    _, up = run(model, fr, tile=32, tile_overlap=8, batch=4, pad_batches=True)
    per_frame = len(tiling.axis_starts(100, 32, 8)) * len(tiling.axis_starts(150, 32, 8))
    assert set(shapes) == {(4, 3, 32, 32)}
    assert len(shapes) == math.ceil(3 * per_frame / 4) == up.stats.forward_calls
    assert up.stats.tiles == 3 * per_frame and up.stats.frames == 3
    assert up.stats.filler_tiles == len(shapes) * 4 - 3 * per_frame


@pytest.mark.parametrize("h,w,multiple", [(100, 150, 1), (37, 53, 1), (16, 16, 1), (45, 77, 8), (129, 66, 16)])
def test_tiled_equals_untiled_for_a_small_receptive_field(float_out, h: int, w: int, multiple: int) -> None:
    fr = frames(2, h, w, seed=h)
    whole, _ = run(TinyConv(multiple), fr, tile=0, batch=1)
    tiled, up = run(TinyConv(multiple), fr, tile=32, tile_overlap=16, batch=3)
    for a, b in zip(whole, tiled):
        assert a.shape == (h * 4, w * 4, 3)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def smooth(h: int, w: int, dtype=np.uint8) -> np.ndarray:
    """A photo-like frame: smooth gradients and soft texture, no pixel noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([np.sin(x / 7) + np.cos(y / 11), np.sin((x + y) / 9), np.cos(x / 5 - y / 13)], -1)
    peak = np.iinfo(dtype).max
    return np.round((rgb / 4 + 0.5) * peak).astype(dtype)


@pytest.mark.parametrize("name", ["bicubic", "lanczos"])
@pytest.mark.parametrize("out_size", [(360, 280), (180, 140), (100, 62), (90, 70)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_interpolators_resize_straight_to_the_output_size(monkeypatch, name: str, out_size, dtype) -> None:
    model = load_model(name)
    if out_size != (360, 280):  # x4 is the native size: Lanczos' forward is its x4 resize
        monkeypatch.setattr(model, "forward", lambda x: pytest.fail("an interpolator computed x4 first"))
    fr = [smooth(70, 90, dtype), smooth(70, 90, dtype)[::-1].copy()]
    out, up = run(model, fr, out_size, tile=32, tile_overlap=8, color_fix="adain")
    assert up.color_fix == "none" and up.stats.tiles == 2 and up.stats.frames == 2
    for o, f in zip(out, fr):
        assert o.shape == (out_size[1], out_size[0], 3) and o.dtype == dtype and o.flags["C_CONTIGUOUS"]
        ref = convert.to_array(model.resize(convert.to_tensor(f, torch.device("cpu")), out_size[1], out_size[0]), dtype)
        # uint8 bicubic takes torch's integer kernel: it rounds between its two passes
        assert np.abs(o.astype(int) - ref.astype(int)).max() <= 1


def test_padding_is_reflect_and_cropped(float_out) -> None:
    fr = frames(1, 37, 21)
    model = TinyConv(multiple=16)
    shapes = shapes_seen(model)
    (out,), _ = run(model, fr, tile=0)
    assert shapes == [(1, 3, 48, 32)]
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
    shapes = shapes_seen(model)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    one, up1 = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=1)
    seven, up7 = run(model, fr, tile=32, tile_overlap=8, batch=7, pad_batches=True)
    assert set(up7.stats.batch_sizes) == {7} and {s[0] for s in shapes} == {7}
    assert up7.stats.tiles == up1.stats.tiles == 3 * 9  # one batch spans several frames
    assert up7.stats.filler_tiles == 1  # 27 tiles: three full batches and one filled up
    for a, b in zip(one, seven):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_short_last_batch_runs_unfilled_without_static_shapes() -> None:
    model = TinyConv()
    shapes = shapes_seen(model)
    _, up = run(model, frames(3, 60, 70), tile=32, tile_overlap=8, batch=7)
    assert not up.pad_batches  # CPU, no graphs, no compile
    assert [s[0] for s in shapes] == [7, 7, 7, 6] and up.stats.filler_tiles == 0


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


@pytest.mark.parametrize("fix", ["adain", "wavelet"])
def test_a_nan_frame_is_never_returned(monkeypatch: pytest.MonkeyPatch, fix: str) -> None:
    nan = float("nan")
    monkeypatch.setattr(engine.colorfix, "adain_affine", lambda sr, lr: (sr.new_full((1, 3, 1, 1), nan),) * 2)
    monkeypatch.setattr(engine, "_color_fix", lambda name: None if name == "adain" else (lambda sr, lr: sr * nan))
    with pytest.raises(ProcessingError, match="non-finite"):
        run(TinyConv(), frames(1, 20, 20), tile=0, color_fix=fix)


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


@pytest.mark.parametrize("fix", ["adain", "wavelet"])
def test_colour_fix_runs_once_on_the_whole_stitched_frame(monkeypatch: pytest.MonkeyPatch, fix: str) -> None:
    seen: list[tuple] = []
    affine = engine.colorfix.adain_affine

    def spy_affine(sr: torch.Tensor, lr: torch.Tensor):
        seen.append((tuple(sr.shape), tuple(lr.shape)))
        return affine(sr, lr)

    def spy_fix(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(sr.shape), tuple(lr.shape)))
        return sr

    monkeypatch.setattr(engine.colorfix, "adain_affine", spy_affine)
    monkeypatch.setattr(engine, "_color_fix", lambda name: None if name == "adain" else spy_fix)
    run(TinyConv(multiple=8), frames(2, 45, 77), (77 * 2, 45 * 2), tile=32, tile_overlap=8, color_fix=fix)
    assert seen == [((1, 3, 180, 308), (1, 3, 45, 77))] * 2  # cropped, before the resize


def test_colour_fix_results_equal_the_unfused_path() -> None:
    """AdaIN folded into quantisation and applied after the reduction (and the one-chain wavelet)
    give what correcting the native frame, then reducing, then quantising gives: within 1 level."""
    fr = frames(2, 45, 77)
    model = TinyConv(multiple=8)
    for out_size in [(77 * 4, 45 * 4), (77 * 2, 45 * 2), (100, 70)]:
        for fix in ("adain", "wavelet"):
            got, _ = run(model, fr, out_size, tile=32, tile_overlap=8, color_fix=fix)
            for g, f in zip(got, fr):
                lr = convert.to_tensor(f, torch.device("cpu"))
                with torch.no_grad():  # receptive radius 2 <= the zero-weight band: tiling is exact
                    sr = model(tiling.pad_to_multiple(lr, 8))[..., : 45 * 4, : 77 * 4]
                ref = convert.resize(engine.colorfix.apply_color_fix(fix, sr, lr), out_size[1], out_size[0])
                want = convert.to_array(ref, np.uint8)
                assert np.abs(g.astype(int) - want.astype(int)).max() <= 1, (fix, out_size)


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
def test_compile_matches_eager_fills_batches_and_never_recompiles() -> None:
    fr = frames(2, 60, 70)
    torch._dynamo.reset()
    up = Upscaler(TinyConv(), tile=32, tile_overlap=8, batch=4, compile=True)
    compiled = up.upscale(fr[:1], (280, 240))  # warm-up: the one static shape compiles
    with torch._dynamo.config.patch(error_on_recompile=True):  # any recompilation now raises
        compiled += up.upscale(fr[1:], (280, 240))
    eager, _ = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=4)
    assert up.pad_batches and set(up.stats.batch_sizes) == {4}  # one static shape for the compiler
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(compiled, eager))


# -- CUDA graph capture failures, batch lag, TF32 (the engine's logic, on the CPU) ----------------


class Replay:
    """Stands in for a CUDA graph: calls the function, as a replay would."""

    def __init__(self, fn, example: torch.Tensor) -> None:
        self.fn = fn

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def capture_failing_for(batch: int, error: Exception):
    def capture(fn, example: torch.Tensor):
        if example.shape[0] == batch:
            raise error
        return Replay(fn, example)

    return capture


def graphed(model: nn.Module, capture, **kw) -> Upscaler:
    """An Upscaler on the CPU taking the CUDA-graph path with ``capture`` making the 'graphs'."""
    up = Upscaler(model, tile=32, tile_overlap=8, **kw)
    up.cuda_graphs, up.graphs = True, engine.GraphCache(capture=capture)
    return up


def test_a_failed_graph_capture_falls_back_and_is_counted() -> None:
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    vsr_log = logging.getLogger("vsr")
    vsr_log.addHandler(handler)  # vsr's logger may not propagate (the CLI's setup)
    level = vsr_log.level
    vsr_log.setLevel(logging.WARNING)  # an earlier CLI test with --quiet may have raised it
    fr = frames(2, 60, 70)
    ref, _ = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=4)
    error = RuntimeError("CUDA error: operation not permitted when stream is capturing")
    up = graphed(TinyConv(), capture_failing_for(4, error), batch=4, pad_batches=True)
    out = up.upscale(fr, (280, 240)) + up.upscale(fr, (280, 240))
    vsr_log.removeHandler(handler)
    vsr_log.setLevel(level)
    assert up.stats.graph_failures == 1 and up.stats.graph_captures == 0  # tried once, not per batch
    assert len(warnings) == 1 and "capture failed" in warnings[0]
    assert all(np.array_equal(a, b) for a, b in zip(out, ref + ref))


def test_out_of_memory_inside_a_capture_halves_the_batch() -> None:
    fr = frames(2, 60, 70)
    ref, _ = run(TinyConv(), fr, tile=32, tile_overlap=8, batch=2)
    oom = RuntimeError("CUDA error: out of memory")  # how torch 2.8+ can report it from a capture
    up = graphed(TinyConv(), capture_failing_for(8, oom), batch=8, pad_batches=True)
    out = up.upscale(fr, (280, 240))
    assert up.stats.oom_halvings == 1 and up.batch == 4 and up.stats.graph_captures == 1
    assert up.stats.graph_failures == 0 and up.stats.tiles == 18
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(out, ref))


def test_the_finite_flag_of_a_batch_is_read_after_the_next_is_queued(monkeypatch) -> None:
    events: list[str] = []
    model = TinyConv()
    model.register_forward_pre_hook(lambda m, args: events.append("forward"))
    blend = tiling.blend
    monkeypatch.setattr(tiling, "blend", lambda *a: (events.append("blend"), blend(*a))[1])
    _, up = run(model, frames(1, 60, 70), tile=32, tile_overlap=8, batch=3)  # 9 tiles: 3 batches
    assert events == ["forward", "forward", "blend", "forward", "blend", "blend"]


TF32_IN_FP32: list[bool] = []  # module-level: the engine's fp32 copy of the model is a deep copy


class RecordsTf32(NanInLowPrecision):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            TF32_IN_FP32.append(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
        return super().forward(x)


def test_the_fp32_recompute_runs_with_tf32_off() -> None:
    # set and restored by hand: torch's backend flags are properties of a module object, which
    # pytest 9.2's monkeypatch cannot undo
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        fr = frames(1, 40, 40)
        fr[0][10, 10] = 255
        TF32_IN_FP32.clear()
        _, up = run(RecordsTf32(), fr, tile=32, tile_overlap=8, precision="bf16")
        assert up.stats.nan_retries >= 1
        assert TF32_IN_FP32 and not any(TF32_IN_FP32)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


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
