"""vsr.train.degrade: reproducible per seed, and each degradation does what its config says."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from vsr.train import degrade as D

HR = 64  # HR test image side, px


def smooth_image(seed: int = 0, size: int = HR) -> torch.Tensor:
    """A smooth colour image with some texture: blobs from upsampled noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(3, size // 8, size // 8, generator=g)
    return D.resize(small, (size, size), "bicubic")


def off(cfg: dict) -> dict:
    """The config with every random degradation disabled (final resize only)."""
    cfg = copy.deepcopy(cfg)
    cfg.pop("tiers", None)  # the base parameters alone (a tier would switch degradations back on)
    for stage in ("first", "second"):
        cfg[stage]["blur_prob"] = cfg[stage]["noise_prob"] = cfg[stage]["jpeg_prob"] = 0.0
        cfg[stage]["resize"]["probs"] = {"up": 0.0, "down": 0.0, "keep": 1.0}
    cfg["second_order_prob"] = cfg["final_sinc_prob"] = 0.0
    cfg["video"]["interlace_prob"] = cfg["video"]["vhs_prob"] = cfg["video"]["codec_prob"] = 0.0
    return cfg


@pytest.fixture(scope="module")
def cfg() -> dict:
    return D.load_config()


def test_same_seed_same_output_other_seed_other_output(cfg):
    hr = smooth_image()
    a = D.degrade(hr, np.random.default_rng(7), cfg)
    b = D.degrade(hr, np.random.default_rng(7), cfg)
    c = D.degrade(hr, np.random.default_rng(8), cfg)
    assert a.shape == (3, HR // 4, HR // 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_uint8_helper_is_reproducible(cfg):
    hr = D.to_uint8(smooth_image(1))
    assert np.array_equal(D.degrade_uint8(hr, 3, cfg), D.degrade_uint8(hr, 3, cfg))


def test_all_off_is_a_plain_downscale(cfg):
    hr = smooth_image(2)
    lr = D.degrade(hr, np.random.default_rng(0), off(cfg))
    area = D.resize(hr, (HR // 4, HR // 4), "area")
    assert float((lr - area).abs().mean()) < 0.02  # one of area/bilinear/bicubic, all close on smooth input


def test_degradations_change_the_image(cfg):
    hr = smooth_image(3)
    clean = D.resize(hr, (HR // 4, HR // 4), "area")
    damaged = D.select_tiers(cfg, {"medium": 1.0, "heavy": 1.0})  # the clean tier is a plain reduction
    errs = [float((D.degrade(hr, np.random.default_rng(s), damaged) - clean).abs().mean()) for s in range(4)]
    assert min(errs) > 0.005


@pytest.mark.parametrize("shape", ["gaussian", "generalized", "plateau"])
def test_kernels_normalised_and_anisotropic(shape):
    k = D.gaussian_family_kernel(21, 3.0, 1.0, 0.0, shape, 1.0)
    assert k.shape == (21, 21) and math.isclose(k.sum(), 1.0, abs_tol=1e-9)
    assert k[10, :].sum() > k[:, 10].sum()  # sigma_x > sigma_y: wider along x
    assert np.allclose(k, k[::-1, ::-1])


def test_sinc_kernel_rings():
    k = D.sinc_kernel(21, math.pi / 3)
    assert math.isclose(k.sum(), 1.0, abs_tol=1e-9)
    assert k.min() < 0  # negative lobes: overshoot and ringing


def test_blur_removes_high_frequencies():
    checker = torch.from_numpy((np.indices((32, 32)).sum(0) % 2).astype(np.float32)).expand(3, 32, 32)
    blurred = D.filter2d(checker, D.gaussian_family_kernel(7, 1.5, 1.5, 0.0, "gaussian", 1.0))
    assert float(blurred.std()) < 0.1 * float(checker.std())


def test_gaussian_noise_has_the_configured_strength():
    img = torch.full((3, 128, 128), 0.5)
    cfg = {"gray_prob": 0.0, "gaussian_prob": 1.0, "gaussian_sigma": [10, 10], "poisson_scale": [1, 1]}
    noisy = D.add_noise(img, np.random.default_rng(0), cfg)
    assert abs(float((noisy - img).std()) * 255 - 10) < 1.0
    gray = D.add_noise(img, np.random.default_rng(0), {**cfg, "gray_prob": 1.0})
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_poisson_noise_grows_with_brightness():
    cfg = {"gray_prob": 0.0, "gaussian_prob": 0.0, "gaussian_sigma": [1, 1], "poisson_scale": [1, 1]}
    dark, bright = torch.full((3, 64, 64), 0.05), torch.full((3, 64, 64), 0.9)
    n_dark = float((D.add_noise(dark, np.random.default_rng(0), cfg) - dark).std())
    n_bright = float((D.add_noise(bright, np.random.default_rng(0), cfg) - bright).std())
    assert n_bright > 2 * n_dark


def test_jpeg_quality_orders_the_error():
    img = smooth_image(4)
    low = float((D.jpeg(img, 10) - img).abs().mean())
    high = float((D.jpeg(img, 95) - img).abs().mean())
    assert low > high > 0


@pytest.mark.parametrize("codec", ["h264", "mpeg2"])
def test_codec_roundtrip_is_aligned_and_rate_dependent(cfg, codec):
    img = smooth_image(5, 48)
    base = {**cfg["video"]["codec"], "codecs": {codec: 1.0}}
    good = {**base, "h264_crf": [12, 12], "mpeg2_qscale": [2, 2]}
    bad = {**base, "h264_crf": [45, 45], "mpeg2_qscale": [31, 31]}
    out_good = D.codec_roundtrip(img, np.random.default_rng(1), good)
    out_bad = D.codec_roundtrip(img, np.random.default_rng(1), bad)
    assert out_good.shape == img.shape
    err_good, err_bad = float((out_good - img).abs().mean()), float((out_bad - img).abs().mean())
    # Aligned: the pan was undone, so no shifted copy of the input matches better.
    shifted = [float((out_good - torch.roll(img, (dy, dx), (1, 2)))[:, 3:-3, 3:-3].abs().mean())
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    assert float((out_good - img)[:, 3:-3, 3:-3].abs().mean()) < min(shifted)
    assert err_bad > err_good
    odd = D.codec_roundtrip(img[:, :45, :47], np.random.default_rng(1), good)  # odd sizes are padded
    assert odd.shape == (3, 45, 47)


def test_interlace_combs_and_vhs_smears_chroma(cfg):
    stripes = torch.zeros(3, 16, 16)
    stripes[:, :, 8:] = 1.0  # a vertical edge: field motion shows as combing on it
    woven = D.interlace(stripes, np.random.default_rng(0), {"max_field_shift_px": 2})
    assert not torch.equal(woven[:, 0], woven[:, 1]) or not torch.equal(woven[:, 1], woven[:, 2])
    img = smooth_image(6, 32)
    v = D.vhs(img, np.random.default_rng(0), cfg["video"]["vhs"])
    assert v.shape == img.shape and float((v - img).abs().mean()) > 0.002


def test_tiers_order_the_damage(cfg):
    """Clean pairs are a plain ×4 reduction; damage grows clean < mild < medium < heavy."""
    hr = smooth_image(7)
    area = D.resize(hr, (HR // 4, HR // 4), "area")
    err = {}
    for tier in cfg["tiers"]:
        only = D.select_tiers(cfg, {tier: 1.0})
        err[tier] = np.mean([float((D.degrade(hr, np.random.default_rng(s), only) - area).abs().mean()) for s in range(8)])
    assert err["clean"] < 0.01
    assert err["clean"] < err["mild"] < err["medium"] < err["heavy"]


def test_tier_weights_and_selection(cfg):
    tiers = cfg["tiers"]
    total = sum(t["weight"] for t in tiers.values())
    assert (tiers["clean"]["weight"] + tiers["mild"]["weight"]) / total >= 1 / 3  # issue 19: ≥ a third clean or mild
    assert D.parse_tiers("clean,mild:3") == {"clean": 1.0, "mild": 3.0}
    picked = {D.draw_tier(D.select_tiers(cfg, {"heavy": 1.0}), np.random.default_rng(s)) for s in range(20)}
    assert picked == {"heavy"}
    with pytest.raises(ValueError):
        D.select_tiers(cfg, {"nonsense": 1.0})
    merged = D.tier_config(cfg, "mild")
    assert merged["video"]["codec"]["codecs"] == {"h264": 1.0}  # weight tables are replaced, not merged
    assert merged["video"]["codec"]["frames"] == cfg["video"]["codec"]["frames"]  # the rest is inherited


def test_antialiased_resize_is_closer_to_area_than_plain():
    fine = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))  # all detail above LR Nyquist
    area = D.resize(fine, (16, 16), "area")
    plain = float((D.resize(fine, (16, 16), "bicubic") - area).abs().mean())
    aa = float((D.resize(fine, (16, 16), "bicubic_aa") - area).abs().mean())
    assert aa < 0.5 * plain
