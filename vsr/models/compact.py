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

from vsr.errors import WeightsError

SHIPPED_WEIGHTS = Path(__file__).with_name("weights") / "compact.safetensors"
CONFIG_METADATA_KEY = "vsr_compact_config"  # safetensors metadata key holding CompactConfig as JSON


@dataclass(frozen=True)
class CompactConfig:
    # 4: the package's native scale (AdcSR's); the engine resizes for --scale 1..3.
    scale: int = 4
    # 32 feature channels: conv cost grows with its square; 32 keeps 176×144 → ×4 above 8 frames/s on
    # two CPU cores, where 64 (Real-ESRGAN's video model) runs at about a third of that.
    num_feat: int = 32
    # 16 body convs give a 35×35 LR receptive field: enough context to tell noise and codec blocks
    # (8–16 px) from texture; each conv costs ~9.2 k params and ~0.47 GFLOP at 176×144.
    num_conv: int = 16
    # "nearest" residual base (as SRVGGNetCompact): free to compute and lets the network own all
    # interpolation; "bicubic" gives a smoother start but costs a ×4 bicubic per frame at 4H×4W.
    base: str = "nearest"


class Compact(nn.Module):
    """All-convolutional ×4 upscaler at LR resolution; follows the model contract (DESIGN.md)."""

    multiple = 1  # fully convolutional with zero padding: any H, W

    def __init__(self, config: CompactConfig | None = None) -> None:
        super().__init__()
        self.config = config or CompactConfig()
        c, s = self.config.num_feat, self.config.scale
        if self.config.base not in ("nearest", "bicubic"):
            raise ValueError(f"base must be nearest or bicubic, got {self.config.base!r}")
        self.scale = s
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.PReLU(c)]
        for _ in range(self.config.num_conv):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.PReLU(c)]
        layers += [nn.Conv2d(c, 3 * s * s, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(s)
        # Start as the base interpolator: the last conv outputs zero residual.
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shuffle(self.body(x))
        if self.config.base == "nearest":
            base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        else:
            base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return y + base


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


def config_from_metadata(metadata: dict[str, str] | None) -> CompactConfig:
    """The config stored in a weights file; defaults when the file has none."""
    if not metadata or CONFIG_METADATA_KEY not in metadata:
        return CompactConfig()
    raw = json.loads(metadata[CONFIG_METADATA_KEY])
    known = {f.name for f in fields(CompactConfig)}
    return CompactConfig(**{k: v for k, v in raw.items() if k in known})


def save(model: Compact, path: Path, extra_metadata: dict[str, str] | None = None) -> None:
    """Write the weights as safetensors (fp32) with the config in the metadata."""
    from safetensors.torch import save_file

    metadata = {**(extra_metadata or {}), **config_to_metadata(model.config)}
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def load(weights: Path | None, device: torch.device, dtype: torch.dtype) -> Compact:
    """Build the model from a safetensors file (default: the shipped one) on ``device`` in ``dtype``."""
    from safetensors import SafetensorError, safe_open

    path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"compact weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            config = config_from_metadata(f.metadata())
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise WeightsError(f"cannot read compact weights {path}: {e}") from e
    model = Compact(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not match the compact architecture {config}: {e}") from e
    return model.to(device=device, dtype=dtype)
