"""AdcSR (CVPR 2025), the one-step diffusion-GAN ×4 generator, in plain PyTorch.

Written from docs/adcsr.md (the authors' release, described); no diffusers at run time.

    x (N,3,H,W) in [-1,1] ─PixelUnshuffle(2)─▶ pruned SD-2.1 UNet (no time embedding, no cross-attention)
      ─▶ (N,256,H/2,W/2) ─▶ half-width VAE decoder: mid block, 3 upsampling stages ─▶ (N,3,4H,4W), raw

Module names follow diffusers' where the authors' checkpoints use them, with a few shortened (see
``_RENAMES`` in vsr.models.adcsr.keys, which maps the authors' two files, ``net_params_200.pkl`` and
``halfDecoder.ckpt``, to this module's state dict and back, as pure functions on state dicts).

Numerics: every GroupNorm / LayerNorm computes its statistics in fp32 whatever the model's dtype
(flat letterbox regions overflow fp16 otherwise), and attention uses SDPA with the scale the released
weights were trained with, 1/sqrt(head dim) = 1/sqrt(48), not SD's original 1/8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

GROUP_CHOICES = (32, 24, 16, 12, 8, 6, 4, 2, 1)  # the authors' pruning picks the first that divides the width


def unet_groups(width: int) -> int:
    return next(g for g in GROUP_CHOICES if width % g == 0)


@dataclass(frozen=True)
class AdcSRConfig:
    widths: tuple[int, ...] = (240, 480, 960, 960)  # UNet level widths: SD-2.1's 320/640/1280/1280 × 0.75
    heads: tuple[int, ...] = (5, 10, 20, 20)  # heads per level, SD's counts kept by pruning (head dim 48)
    attention: tuple[bool, ...] = (True, True, True, False)  # levels with transformers (SD: not the lowest)
    layers: int = 2  # ResNets per down block; up blocks have one more (one per skip)
    in_channels: int = 12  # RGB after PixelUnshuffle(2)
    dec_widths: tuple[int, ...] = (256, 256, 128, 64)  # half-width VAE decoder up path; [0] is the latent width
    dec_layers: int = 3  # ResNets per decoder up block (diffusers' layers_per_block=2, plus one)
    dec_groups: int = 32  # GroupNorm groups everywhere in the decoder
    unet_eps: float = 1e-5  # GroupNorm eps in UNet ResNets and conv_norm_out (diffusers' UNet norm_eps)
    attn_eps: float = 1e-6  # GroupNorm eps before UNet transformers, and of every decoder norm
    ln_eps: float = 1e-5  # LayerNorm eps inside the transformer blocks
    ff_mult: int = 4  # GEGLU hidden width = ff_mult × width

    @classmethod
    def from_dict(cls, d: Mapping) -> "AdcSRConfig":
        """A config from stored metadata, every field checked before anything is allocated from it
        (ValueError naming the field): known names only, sizes within ``LIMITS``."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a config is a mapping, not {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"unknown config field(s) {', '.join(unknown)}")
        out = {}
        for k, v in d.items():
            default = getattr(cls(), k)
            if isinstance(default, tuple):
                if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= LIMITS["levels"]:
                    raise ValueError(f"{k}: a list of 1 to {LIMITS['levels']} values, got {v!r:.60}")
                v = tuple(_checked(k, x, type(default[0])) for x in v)
            else:
                v = _checked(k, v, type(default))
            out[k] = v
        return cls(**out)

    def to_dict(self) -> dict:
        return asdict(self)


LIMITS = {"width": 4096, "heads": 64, "layers": 8, "levels": 8, "in_channels": 64, "ff_mult": 16}


def _checked(name: str, value: object, kind: type) -> object:
    """One stored config value of type ``kind`` (int: 1..LIMITS; float: an eps in (0, 1); bool)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: true or false, got {value!r:.60}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{name}: a number between 0 and 1, got {value!r:.60}")
        return float(value)
    limit = next((v for k, v in LIMITS.items() if k in name), LIMITS["width"])
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"{name}: a whole number from 1 to {limit}, got {value!r:.60}")
    return value


FULL = AdcSRConfig()
# Reduced width for tests, built by the same code: what 0.75-pruning a UNet of widths 64/128/128/128 with
# heads 1/2/2/2 gives (head dim stays 48), with a quarter-width decoder: 7.3 M parameters.
TINY = AdcSRConfig(widths=(48, 96, 96, 96), heads=(1, 2, 2, 2), dec_widths=(64, 64, 32, 32))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32 (or wider) whatever the input dtype, output cast back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.promote_types(x.dtype, torch.float32)
        y = F.group_norm(x.to(dt), self.num_groups, self.weight.to(dt), self.bias.to(dt), self.eps)
        return y.to(x.dtype)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in fp32 (or wider), output cast back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.promote_types(x.dtype, torch.float32)
        y = F.layer_norm(x.to(dt), self.normalized_shape, self.weight.to(dt), self.bias.to(dt), self.eps)
        return y.to(x.dtype)


class ResBlock(nn.Module):
    """GN → SiLU → conv3×3 → GN → SiLU → conv3×3, plus the input (1×1 conv when widths differ)."""

    def __init__(self, cin: int, cout: int, groups_in: int, groups_out: int, eps: float) -> None:
        super().__init__()
        self.norm1 = GroupNorm32(groups_in, cin, eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = GroupNorm32(groups_out, cout, eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


def unet_res(cin: int, cout: int, cfg: AdcSRConfig) -> ResBlock:
    return ResBlock(cin, cout, unet_groups(cin), unet_groups(cout), cfg.unet_eps)


def dec_res(cin: int, cout: int, cfg: AdcSRConfig) -> ResBlock:
    return ResBlock(cin, cout, cfg.dec_groups, cfg.dec_groups, cfg.attn_eps)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention over (N, L, C) tensors, softmax scale 1/sqrt(C/heads)."""
    n, length, c = q.shape
    q, k, v = (t.reshape(n, length, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, scale=(c // heads) ** -0.5)
    return y.transpose(1, 2).reshape(n, length, c)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_out(attend(self.to_q(x), self.to_k(x), self.to_v(x), self.heads))


class GEGLU(nn.Module):
    """Linear C → 2·hidden, split (value, gate), value · gelu(gate) (exact gelu), Linear hidden → C."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * hidden)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))


class TransformerBlock(nn.Module):
    """x + attn1(LN1(x)); x + ff(LN3(x)). SD's cross-attention (norm2/attn2) was removed by the authors."""

    def __init__(self, dim: int, heads: int, cfg: AdcSRConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(dim, eps=cfg.ln_eps)
        self.attn1 = SelfAttention(dim, heads)
        self.norm3 = LayerNorm32(dim, eps=cfg.ln_eps)
        self.ff = GEGLU(dim, cfg.ff_mult * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        return x + self.ff(self.norm3(x))


class Transformer(nn.Module):
    """GN → (N, HW, C) → proj_in → one block → proj_out → (N, C, H, W), plus the input."""

    def __init__(self, dim: int, heads: int, cfg: AdcSRConfig) -> None:
        super().__init__()
        self.norm = GroupNorm32(unet_groups(dim), dim, cfg.attn_eps)
        self.proj_in = nn.Linear(dim, dim)
        self.block = TransformerBlock(dim, heads, cfg)
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(n, h * w, c)  # free in channels_last
        y = self.proj_out(self.block(self.proj_in(y)))
        return y.reshape(n, h, w, c).permute(0, 3, 1, 2) + x


class DownBlock(nn.Module):
    """``layers`` × (ResNet[, Transformer]), each output a skip; then an optional stride-2 conv, a skip too."""

    def __init__(self, cin: int, cout: int, heads: int | None, down: bool, cfg: AdcSRConfig) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(unet_res(cin if j == 0 else cout, cout, cfg) for j in range(cfg.layers))
        self.attentions = (
            nn.ModuleList(Transformer(cout, heads, cfg) for _ in range(cfg.layers)) if heads else None
        )
        self.down = nn.Conv2d(cout, cout, 3, stride=2, padding=1) if down else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for j, res in enumerate(self.resnets):
            x = res(x)
            if self.attentions is not None:
                x = self.attentions[j](x)
            skips.append(x)
        if self.down is not None:
            x = self.down(x)
            skips.append(x)
        return x


class UpBlock(nn.Module):
    """One (ResNet on cat(x, skip)[, Transformer]) per skip; then an optional nearest ×2 + conv3×3."""

    def __init__(self, cin: int, skip_widths: list[int], cout: int, heads: int | None, up: bool,
                 cfg: AdcSRConfig) -> None:
        super().__init__()
        ins = [cin] + [cout] * (len(skip_widths) - 1)
        self.resnets = nn.ModuleList(unet_res(i + s, cout, cfg) for i, s in zip(ins, skip_widths))
        self.attentions = (
            nn.ModuleList(Transformer(cout, heads, cfg) for _ in skip_widths) if heads else None
        )
        self.up = nn.Conv2d(cout, cout, 3, padding=1) if up else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for j, res in enumerate(self.resnets):
            x = res(torch.cat([x, skips.pop()], dim=1))
            if self.attentions is not None:
                x = self.attentions[j](x)
        if self.up is not None:
            x = self.up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class MidBlock(nn.Module):
    """ResNet, attention, ResNet (the UNet's with a Transformer, the decoder's with VaeAttention)."""

    def __init__(self, resnets: list[nn.Module], attention: nn.Module) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList([attention])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class UNet(nn.Module):
    def __init__(self, cfg: AdcSRConfig) -> None:
        super().__init__()
        w, n = cfg.widths, len(cfg.widths)
        heads = [h if a else None for h, a in zip(cfg.heads, cfg.attention)]
        self.conv_in = nn.Conv2d(cfg.in_channels, w[0], 3, padding=1)
        skips, cin = [w[0]], w[0]  # widths of the skip stack, in push order
        self.down_blocks = nn.ModuleList()
        for i in range(n):
            self.down_blocks.append(DownBlock(cin, w[i], heads[i], i < n - 1, cfg))
            skips += [w[i]] * (cfg.layers + (i < n - 1))
            cin = w[i]
        self.mid_block = MidBlock([unet_res(cin, cin, cfg), unet_res(cin, cin, cfg)],
                                  Transformer(cin, cfg.heads[-1], cfg))
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(n)):
            mine = [skips.pop() for _ in range(cfg.layers + 1)]
            self.up_blocks.append(UpBlock(cin, mine, w[i], heads[i], i > 0, cfg))
            cin = w[i]
        self.conv_norm_out = GroupNorm32(unet_groups(cin), cin, cfg.unet_eps)
        self.conv_out = nn.Conv2d(cin, cfg.dec_widths[0], 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            x = block(x, skips)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x, skips)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VaeAttention(nn.Module):
    """Single-head attention over all positions (q/k/v/out with bias, scale 1/sqrt(C)), residual."""

    def __init__(self, dim: int, cfg: AdcSRConfig) -> None:
        super().__init__()
        self.group_norm = GroupNorm32(cfg.dec_groups, dim, cfg.attn_eps)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.group_norm(x).permute(0, 2, 3, 1).reshape(n, h * w, c)
        y = self.to_out(attend(self.to_q(y), self.to_k(y), self.to_v(y), 1))
        return y.reshape(n, h, w, c).permute(0, 3, 1, 2) + x


class DecoderUpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, up: bool, cfg: AdcSRConfig) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(dec_res(cin if j == 0 else cout, cout, cfg) for j in range(cfg.dec_layers))
        self.up = nn.Conv2d(cout, cout, 3, padding=1) if up else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for res in self.resnets:
            x = res(x)
        if self.up is not None:
            x = self.up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class Decoder(nn.Module):
    """The half-width VAE decoder minus its conv_in: mid block, up path, GN → SiLU → conv_out to RGB."""

    def __init__(self, cfg: AdcSRConfig) -> None:
        super().__init__()
        w = cfg.dec_widths
        self.mid_block = MidBlock([dec_res(w[0], w[0], cfg), dec_res(w[0], w[0], cfg)], VaeAttention(w[0], cfg))
        ins = (w[0],) + w[:-1]
        self.up_blocks = nn.ModuleList(DecoderUpBlock(i, o, k < len(w) - 1, cfg) for k, (i, o) in enumerate(zip(ins, w)))
        self.conv_norm_out = GroupNorm32(cfg.dec_groups, w[-1], cfg.attn_eps)
        self.conv_out = nn.Conv2d(w[-1], 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AdcSR(nn.Module):
    """Model contract: (N,3,H,W) in [-1,1], H and W multiples of 16 → (N,3,4H,4W), raw (not clamped:
    the official colour correction uses the unclamped output's statistics)."""

    def __init__(self, cfg: AdcSRConfig = FULL) -> None:
        super().__init__()
        self.config = cfg
        self.scale = 2 ** (len(cfg.dec_widths) - 1) // 2  # PixelUnshuffle(2), then the decoder's ×2 stages
        self.multiple = 2 * 2 ** (len(cfg.widths) - 1)  # H/2 must survive the UNet's stride-2 convs
        self.unet = UNet(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.unet(F.pixel_unshuffle(x, 2)))


def build_adcsr() -> AdcSR:
    return AdcSR(FULL)


def build_adcsr_tiny() -> AdcSR:
    return AdcSR(TINY)
