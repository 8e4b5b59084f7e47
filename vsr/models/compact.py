"""The compact ×4 model shipped inside the package: the default whenever AdcSR cannot run.

An SRVGGNetCompact-like network (Real-ESRGAN's small video model, re-implemented from its idea):
every convolution runs at the low resolution, a 3×3 conv + PReLU stack, then one conv to
``3·scale²`` channels and a pixel shuffle; the network predicts a residual over the nearest-neighbour
upsampled input, so at initialisation it is already a (blocky) upscaler and only has to learn detail.

Weights: ``vsr/models/weights/compact.safetensors`` (trained by ``vsr train``, see DATA.md and
docs/compact_model_card.md). The file's metadata holds the :class:`CompactConfig` as JSON, so a file
trained with other widths loads into the matching architecture.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import UsageError, WeightsError
from vsr.models import classic
from vsr.weights.formats import read_metadata, read_safetensors, write_safetensors

SHIPPED_WEIGHTS = Path(__file__).with_name("weights") / "compact.safetensors"
PRELU_INIT = 0.25  # initial negative slope of every PReLU (PyTorch's default)
EXPORT_NAME = "compact.safetensors"  # the weights file `vsr train` writes into its run folder
CONFIG_METADATA_KEY = "vsr_compact_config"  # safetensors metadata key holding CompactConfig as JSON
SETS_METADATA_KEY = "vsr_compact_sets"  # metadata of a --denoise pair: its key prefixes, "grain,denoise"
SET_GRAIN, SET_DENOISE = "grain", "denoise"  # --denoise 0 keeps grain and noise; 1 removes the most
DEFAULT_DENOISE = 0.25  # denoise of a pair file that names no default (the shipped one names 0.25: see its card)
DEFAULT_DENOISE_KEY = "vsr_default_denoise"  # metadata of a pair file: the S it is best used at by default


@dataclass(frozen=True)
class CompactConfig:
    # 4: the package's native scale (AdcSR's); the engine resizes for --scale 1..3.
    scale: int = 4
    # 48 feature channels: conv cost grows with its square; 48 × 8 convs (~190 k parameters) keeps
    # 176×144 → ×4 near 10+ frames/s model-only on two busy CPU cores; 64 × 16 (Real-ESRGAN's video
    # model, 620 k) runs at about 4 there.
    num_feat: int = 48
    # 8 body convs: a 19×19 LR receptive field, enough to tell noise and 8-px codec blocks from
    # texture. A plain 16-conv stack trained far slower here (no skips: gradients fade through it),
    # so width was bought instead of depth.
    num_conv: int = 8
    # "bicubic" residual base: the untrained network is exactly bicubic, so training only has to
    # learn restoration (and beats bicubic from its first useful step); it costs one ×4 bicubic
    # resize per frame (a few ms at 704×576). "nearest" (SRVGGNetCompact's) is free but the network
    # must then also learn the interpolation.
    base: str = "bicubic"


class Compact(nn.Module):
    """All-convolutional ×4 upscaler at LR resolution; follows the model contract (docs/architecture.md)."""

    multiple = 1  # fully convolutional with zero padding: any H, W

    def __init__(self, config: CompactConfig | None = None) -> None:
        super().__init__()
        self.config = config or CompactConfig()
        c, s = self.config.num_feat, self.config.scale
        if self.config.base not in ("nearest", "bicubic"):
            raise ValueError(f"base must be nearest or bicubic, got {self.config.base!r}")
        self.scale = s
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.PReLU(c, init=PRELU_INIT)]
        for _ in range(self.config.num_conv):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.PReLU(c, init=PRELU_INIT)]
        layers += [nn.Conv2d(c, 3 * s * s, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(s)
        # The bicubic base as a grouped conv at LR size, added before the shuffle: the same values as
        # F.interpolate(mode="bicubic") (within float rounding) at a fraction of its CPU cost.
        self.register_buffer("base_weight", classic.bicubic_phase_weight(s), persistent=False)
        # He init for the PReLU slope (0.25): keeps activations at unit scale through the plain stack
        # (PyTorch's default shrinks them ~3× per layer, and a 16-conv body then barely trains).
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=PRELU_INIT, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        # Start as the base interpolator: the last conv outputs zero residual.
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        # NHWC weights and activations: ~30% faster 3×3 convs on CPU (oneDNN), also fine on CUDA.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s2 = self.scale * self.scale
        y = self.body(x.contiguous(memory_format=torch.channels_last))  # (N, 3·s², H, W): 3 × s² phases
        if self.config.base == "nearest":  # every phase of a pixel is the pixel
            y = y.view(n, 3, s2, h, w).add_(x[:, :, None]).view(n, 3 * s2, h, w)
        else:
            y = y.add_(F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.base_weight.to(x.dtype), groups=3))
        return self.shuffle(y)  # (N, 3, H·s, W·s)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops_per_frame(config: CompactConfig, width: int, height: int) -> float:
    """Multiply-adds ×2 of the convolutions for one LR frame (PReLU, shuffle and base are ignored)."""
    c, s, k2 = config.num_feat, config.scale, 9
    macs_per_px = 3 * c * k2 + config.num_conv * c * c * k2 + c * 3 * s * s * k2
    return 2.0 * macs_per_px * width * height / 1e9


def build(config: CompactConfig | None = None) -> Compact:
    return Compact(config)


def config_to_metadata(config: CompactConfig) -> dict[str, str]:
    return {CONFIG_METADATA_KEY: json.dumps(asdict(config), sort_keys=True)}


LIMITS = {"scale": (1, 8), "num_feat": (1, 512), "num_conv": (0, 64)}  # what a stored config may say


def config_from_metadata(metadata: dict[str, str] | None) -> CompactConfig:
    """The config stored in a weights file (defaults when the file has none), every field checked
    before anything is allocated from it; ValueError naming the field."""
    if not metadata or CONFIG_METADATA_KEY not in metadata:
        return CompactConfig()
    raw = json.loads(metadata[CONFIG_METADATA_KEY])
    if not isinstance(raw, dict):
        raise ValueError(f"{CONFIG_METADATA_KEY} is a JSON object, not {type(raw).__name__}")
    known = {f.name for f in fields(CompactConfig)}
    out = {}
    for k, v in raw.items():
        if k not in known:
            continue
        if k == "base":
            if v not in ("nearest", "bicubic"):
                raise ValueError(f"base: nearest or bicubic, got {v!r:.40}")
        else:
            lo, hi = LIMITS[k]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{k}: a whole number from {lo} to {hi}, got {v!r:.40}")
        out[k] = v
    return CompactConfig(**out)


def save(model: Compact, path: Path, extra_metadata: dict[str, str] | None = None) -> None:
    """Write the weights as safetensors (fp32) with the config in the metadata."""
    _write(path, {"": model}, model.config, extra_metadata)


def save_pair(grain: Compact, denoise: Compact, path: Path, extra_metadata: dict[str, str] | None = None) -> None:
    """Write the two weight sets of ``--denoise`` into one file: ``grain`` (S = 0: trained to keep grain
    and noise, on clean and mildly degraded pairs) and ``denoise`` (S = 1: trained on heavily degraded
    pairs). Both must share one architecture and, for their interpolation to mean anything, one
    parent (fine-tuned from the same weights), as Real-ESRGAN's general model and its -wdn twin."""
    if grain.config != denoise.config:
        raise ValueError(f"the two sets differ in architecture: {grain.config} vs {denoise.config}")
    _write(path, {SET_GRAIN: grain, SET_DENOISE: denoise}, grain.config,
           {**(extra_metadata or {}), SETS_METADATA_KEY: f"{SET_GRAIN},{SET_DENOISE}"})


def _write(path: Path, models: dict[str, Compact], config: CompactConfig, metadata: dict[str, str] | None) -> None:
    tensors = {(f"{prefix}." if prefix else "") + k: v.float()
               for prefix, m in models.items() for k, v in m.state_dict().items()}
    write_safetensors(tensors, path, {**(metadata or {}), **config_to_metadata(config)})


def split_sets(state: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> dict[str, dict[str, torch.Tensor]]:
    """``{"": state}`` for a file of one weight set, ``{"grain": ..., "denoise": ...}`` for a pair."""
    if not metadata or SETS_METADATA_KEY not in metadata:
        return {"": state}
    sets = {}
    for prefix in metadata[SETS_METADATA_KEY].split(","):
        sets[prefix] = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    if set(sets) != {SET_GRAIN, SET_DENOISE}:
        raise WeightsError(f"a compact file holds the sets {SET_GRAIN} and {SET_DENOISE}, not {sorted(sets)}")
    return sets


def blend_sets(sets: dict[str, dict[str, torch.Tensor]], denoise: float) -> dict[str, torch.Tensor]:
    """Parameters at denoise strength ``denoise`` in [0, 1]: (1 - S)·grain + S·denoise, key by key."""
    grain, clean = sets[SET_GRAIN], sets[SET_DENOISE]
    if set(grain) != set(clean):
        raise WeightsError("the grain and denoise weight sets have different keys")
    return {k: torch.lerp(grain[k].float(), clean[k].float(), float(denoise)) for k in grain}


def load(weights: Path | None, device: torch.device, dtype: torch.dtype, denoise: float | None = None) -> Compact:
    """Build the model from a safetensors file (default: the shipped one) on ``device`` in ``dtype``.
    A file with a grain/denoise pair is blended at ``denoise`` (None: DEFAULT_DENOISE); a file of
    one set takes no ``denoise``."""
    path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"compact weights not found: {path}")
    metadata = read_metadata(path)
    try:
        config = config_from_metadata(metadata)
    except ValueError as e:  # JSONDecodeError included
        raise WeightsError(f"{path}: invalid compact config in its metadata ({e})") from None
    state, _ = read_safetensors(path)
    sets = split_sets(state, metadata)
    if "" in sets:
        if denoise is not None:
            raise UsageError(f"{path}: holds one weight set, so denoise does not apply to it")
        state = sets[""]
    else:
        if denoise is None:
            try:
                denoise = float(metadata.get(DEFAULT_DENOISE_KEY, DEFAULT_DENOISE))
            except ValueError:
                raise WeightsError(f"{path}: {DEFAULT_DENOISE_KEY} is not a number") from None
            if not 0 <= denoise <= 1:
                raise WeightsError(f"{path}: {DEFAULT_DENOISE_KEY} {denoise} is outside 0..1")
        state = blend_sets(sets, denoise)
    model = Compact(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not match the compact architecture {config}: {e}") from e
    return model.to(device=device, dtype=dtype)


def has_denoise_pair(weights: Path | None) -> bool:
    """Whether the compact file (default: the shipped one) holds a grain/denoise pair."""
    path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    return path.is_file() and SETS_METADATA_KEY in read_metadata(path)
