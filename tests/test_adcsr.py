"""AdcSR: the official key layout, parity with the authors' structure built from diffusers, errors, numerics.

The parity reference follows docs/adcsr.md's description for the authors' network: diffusers' SD-style
UNet2DConditionModel at reduced width, time embedding and cross-attention removed, conv_in 16→64 and
conv_out 64→86, then every conv/linear/norm width × 0.75 (heads kept), plus diffusers' Decoder for the
mid block and the up path. Only diffusers' modules compute; the test wires their blocks together.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from test_weights import REPO, random_tiny, save_lightning_ckpt, save_official
from vsr.upscale import colorfix
from vsr.upscale import convert
from vsr.errors import WeightsError
from vsr.models import MODELS, adcsr, load_model
from vsr.models.adcsr import keys as adcsr_keys

# Key names and shapes of the released checkpoints (shared/adcsr_official_keys.json, copied here so a
# clean clone runs this test too).
OFFICIAL_KEYS = Path(__file__).parent / "data" / "adcsr_official_keys.json"


def test_full_width_keys_and_shapes_match_the_official_files():
    ref = json.loads(OFFICIAL_KEYS.read_text())
    with torch.device("meta"):
        model = MODELS["adcsr"].build()
    net, dec = adcsr_keys.to_official(model.state_dict(), model.config)
    assert {k: tuple(v.shape) for k, v in net.items()} == {k: tuple(s) for k, s in ref["net"]}
    assert {k: tuple(v.shape) for k, v in dec.items()} == {k: tuple(s) for k, s in ref["decoder"]}
    assert set(adcsr_keys.from_official(net, dec)) == set(model.state_dict())
    assert 455e6 < sum(v.numel() for v in model.state_dict().values()) < 457e6


# --- the authors' structure, from diffusers --------------------------------------------------------

def prune(module: nn.Module, keep: float = 0.75) -> None:
    """Slice every conv/linear/norm to ``keep`` of its widths (groups: first of the list that divides)."""
    from diffusers.models.downsampling import Downsample2D
    from diffusers.models.upsampling import Upsample2D

    for name, m in list(module.named_modules()):
        parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        leaf = name.rpartition(".")[2]
        if isinstance(m, nn.Conv2d):
            o, i = int(m.out_channels * keep), int(m.in_channels * keep)
            new = nn.Conv2d(i, o, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
            new.weight.data, new.bias.data = m.weight.data[:o, :i].clone(), m.bias.data[:o].clone()
        elif isinstance(m, nn.Linear):
            o, i = int(m.out_features * keep), int(m.in_features * keep)
            new = nn.Linear(i, o, bias=m.bias is not None)
            new.weight.data = m.weight.data[:o, :i].clone()
            if m.bias is not None:
                new.bias.data = m.bias.data[:o].clone()
        elif isinstance(m, nn.GroupNorm):
            c = int(m.num_channels * keep)
            new = nn.GroupNorm(adcsr.model.unet_groups(c), c, eps=m.eps)
        elif isinstance(m, nn.LayerNorm):
            new = nn.LayerNorm(int(m.normalized_shape[0] * keep), eps=m.eps)
        else:
            if isinstance(m, (Downsample2D, Upsample2D)):
                m.channels = int(m.channels * keep)
            continue
        setattr(parent, leaf, new)


def randomize(module: nn.Module) -> None:
    """Weights that make every parameter matter (norms ≠ 1 / 0); a 1/8 softmax scale would be off by 8%."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 1.0 / math.sqrt(p[0].numel()))


def official_tiny():
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.autoencoders.vae import Decoder
    from diffusers.models.resnet import ResnetBlock2D

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(64, 128, 128, 128),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=(1, 2, 2, 2),  # SD-2.1's config naming: these are head counts
        cross_attention_dim=32, use_linear_projection=True)
    del unet.time_embedding
    unet.conv_in, unet.conv_out = nn.Conv2d(16, 64, 3, padding=1), nn.Conv2d(64, 86, 3, padding=1)
    for m in unet.modules():
        if isinstance(m, ResnetBlock2D):
            m.time_emb_proj = None
        if isinstance(m, BasicTransformerBlock):
            m.attn2 = m.norm2 = None
    prune(unet)
    decoder = Decoder(in_channels=4, out_channels=3, up_block_types=["UpDecoderBlock2D"] * 4,
                      block_out_channels=[32, 32, 64, 64], layers_per_block=2, norm_num_groups=32,
                      act_fn="silu", norm_type="group", mid_block_add_attention=True)
    mid = copy.deepcopy(decoder.mid_block)  # the distilled mid block lives in net_params
    for m in (unet, decoder, mid):
        randomize(m)
        m.eval()
    return unet, mid, decoder


def official_forward(unet, mid, decoder, x: torch.Tensor) -> torch.Tensor:
    h = unet.conv_in(F.pixel_unshuffle(x, 2))
    skips = (h,)
    for block in unet.down_blocks:
        h, res = block(h, temb=None) if not hasattr(block, "attentions") else block(h, temb=None, encoder_hidden_states=None)
        skips += res
    h = unet.mid_block(h, temb=None, encoder_hidden_states=None)
    for block in unet.up_blocks:
        n = len(block.resnets)
        h = block(h, res_hidden_states_tuple=skips[-n:], temb=None)
        skips = skips[:-n]
    h = mid(unet.conv_out(unet.conv_act(unet.conv_norm_out(h))), temb=None)
    for block in decoder.up_blocks:
        h = block(h, temb=None)
    return decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(h)))


class OfficialNet(nn.Module):
    """Sequential(PixelUnshuffle, unet, mid), the UNet's blocks again as ``unet.body``: the key layout."""

    def __init__(self, unet, mid):
        super().__init__()
        unet.body = nn.Sequential(*unet.down_blocks, unet.mid_block, *unet.up_blocks, unet.conv_norm_out,
                                  unet.conv_act, unet.conv_out)
        self.body = nn.Sequential(nn.PixelUnshuffle(2), unet, mid)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    pytest.importorskip("diffusers")
    unet, mid, decoder = official_tiny()
    folder = tmp_path_factory.mktemp("authors")
    net_sd = nn.DataParallel(OfficialNet(unet, mid)).state_dict()
    torch.save(net_sd, folder / "net_params_200.pkl")
    save_lightning_ckpt(folder / "halfDecoder.ckpt", {"decoder." + k: v for k, v in decoder.state_dict().items()})
    return folder, (unet, mid, decoder), net_sd


def test_parity_with_the_authors_structure(official):
    folder, modules, net_sd = official
    model = load_model("adcsr-tiny", weights=folder)
    ours_net, _ = adcsr_keys.to_official(model.state_dict(), adcsr.TINY)
    assert set(ours_net) == set(net_sd)  # same layout, aliases included, at this width too
    torch.manual_seed(2)
    x = torch.rand(2, 3, 16, 32) * 2 - 1
    with torch.no_grad():
        ref = official_forward(*modules, x)
        out = model(x)
    assert out.shape == ref.shape == (2, 3, 64, 128)
    assert torch.isfinite(ref).all() and ref.std() > 0.1
    rel = (out - ref).norm() / ref.norm()
    assert rel < 1e-5, rel
    # in float64 the two agree to rounding: the same function, not merely a close one
    model64 = load_model("adcsr-tiny", weights=folder, dtype=torch.float64)
    with torch.no_grad():
        ref64 = official_forward(*(copy.deepcopy(m).double() for m in modules), x.double())
        rel64 = (model64(x.double()) - ref64).norm() / ref64.norm()
    assert rel64 < 1e-12, rel64


def test_softmax_scale_is_one_over_sqrt_head_dim():
    torch.manual_seed(0)
    attn = adcsr.model.SelfAttention(240, 5)  # full-width level 0: head dim 48
    x = torch.randn(1, 7, 240)
    q, k, v = (t(x).view(1, 7, 5, 48).transpose(1, 2) for t in (attn.to_q, attn.to_k, attn.to_v))
    want = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(48), -1) @ v
    want = attn.to_out(want.transpose(1, 2).reshape(1, 7, 240))
    torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-6)


# --- errors ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dicts():
    model = random_tiny()
    return model.state_dict(), *adcsr_keys.to_official(model.state_dict(), adcsr.TINY)


def _load(net, dec):
    return adcsr.instantiate(adcsr_keys.from_official(net, dec), adcsr.TINY)


def test_missing_unexpected_and_misshapen_keys_are_named(tiny_dicts):
    sd, net, dec = tiny_dicts
    key = "module.body.1.up_blocks.1.attentions.2.transformer_blocks.0.ff.net.2.weight"
    alias = "module.body.1.body.6.attentions.2.transformer_blocks.0.ff.net.2.weight"
    less = {k: v for k, v in net.items() if k not in (key, alias)}
    with pytest.raises(WeightsError, match=r"missing .*ff\.net\.2\.weight"):
        _load(less, dec)
    with pytest.raises(WeightsError, match=r"unexpected keys .*module\.body\.3\.conv\.weight"):
        _load({**net, "module.body.3.conv.weight": torch.zeros(1)}, dec)
    with pytest.raises(WeightsError, match=r"unexpected .*halfDecoder\.ckpt state_dict decoder\.up_blocks\.0\.resnets\.7\.norm1\.weight"):
        _load(net, {**dec, "decoder.up_blocks.0.resnets.7.norm1.weight": torch.zeros(1)})
    bad = "decoder.up_blocks.3.resnets.0.conv1.weight"
    with pytest.raises(WeightsError, match=r"wrong shape .*" + bad.replace(".", r"\.") + r".*\(32, 32, 1, 1\) instead of \(32, 32, 3, 3\)"):
        _load(net, {**dec, bad: torch.zeros(32, 32, 1, 1)})
    changed = {**net, alias: net[alias] + 1}
    with pytest.raises(WeightsError, match="alias keys differ.*" + alias.replace(".", r"\.")):
        _load(changed, dec)
    model = _load({k[len("module."):]: v for k, v in net.items()}, dec)  # no DataParallel prefix: fine
    assert all(torch.equal(model.state_dict()[k], sd[k]) for k in sd)


def test_bad_weights_file_exits_3(tiny_dicts, tmp_path):
    _, net, dec = tiny_dicts
    net = {k: v for k, v in net.items() if "conv_in" not in k}
    torch.save(net, tmp_path / "net_params_200.pkl")
    save_lightning_ckpt(tmp_path / "halfDecoder.ckpt", dec)
    with pytest.raises(WeightsError, match=r"missing unet\.conv_in\.bias \(net_params module\.body\.1\.conv_in\.bias\)") as e:
        load_model("adcsr-tiny", weights=tmp_path)
    assert e.value.exit_code == 3


# --- contract and numerics -------------------------------------------------------------------------

def test_contract_and_channels_last():
    model = random_tiny().eval()
    assert (model.scale, model.multiple) == (4, 16)
    x = torch.rand(1, 3, 16, 32) * 2 - 1
    with torch.no_grad():
        y = model(x)
        y_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert y.shape == (1, 3, 64, 128)
    assert (y_cl - y).norm() / y.norm() < 1e-5  # same function, other kernels


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_finite_on_flat_black(dtype):
    model = adcsr.build_adcsr_tiny().eval().to(dtype)
    x = torch.full((1, 3, 32, 32), -1.0, dtype=dtype)
    try:
        with torch.no_grad():
            y = model(x)
    except (RuntimeError, NotImplementedError) as e:  # an op this CPU build lacks in this dtype
        pytest.skip(f"{dtype} forward unsupported on this CPU: {e}")
    assert y.dtype == dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_norms_compute_in_fp32(dtype):
    torch.manual_seed(0)
    x = (250.0 + 2.0 * torch.randn(2, 48, 8, 8)).to(dtype)  # large and nearly flat: x² overflows fp16
    for norm in (adcsr.model.GroupNorm32(24, 48, eps=1e-6), adcsr.model.LayerNorm32(8, eps=1e-5)):
        ref = norm(x.float())
        got = norm.to(dtype)(x)
        assert got.dtype == dtype and torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), ref, rtol=0.02, atol=0.02)


# --- vsr run with AdcSR weights --------------------------------------------------------------------

def test_vsr_run_with_official_weights_equals_library_plus_adain(tmp_path):
    from vsr.media.images import write_image

    model = random_tiny().eval()
    folder = save_official(tmp_path / "w", model.state_dict(), adcsr.TINY)
    rng = np.random.default_rng(0)
    img = (rng.random((32, 48, 3)) * 255).astype(np.uint8)
    write_image(tmp_path / "in.png", img, ".png")
    out = subprocess.run([sys.executable, "-m", "vsr", "run", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                          "--model", "adcsr-tiny", "--weights", str(folder), "--device", "cpu", "--precision", "fp32",
                          "--tile", "0", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import av

    with av.open(str(tmp_path / "out.png")) as c:
        got = next(c.decode(video=0)).to_ndarray(format="rgb24")
    lr = convert.to_tensor(img, torch.device("cpu"))
    with torch.no_grad():
        want = convert.to_array(colorfix.apply_color_fix("adain", model(lr), lr), np.uint8)
    assert got.shape == want.shape == (128, 192, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_vsr_run_adcsr_without_weights_exits_3(tmp_path):
    from vsr.media.images import write_image

    write_image(tmp_path / "in.png", np.zeros((16, 16, 3), np.uint8), ".png")
    out = subprocess.run([sys.executable, "-m", "vsr", "run", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"),
                          "--model", "adcsr", "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr
    assert "vsr weights download adcsr" in out.stderr and "net_params_200.pkl" in out.stderr
    assert not (tmp_path / "o.png").exists()
