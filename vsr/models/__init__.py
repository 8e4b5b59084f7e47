"""Model registry: every upscaler vsr can run, by name.

Each entry says how to build the architecture and how to load it with weights. The registry feeds
``vsr run --model`` choices, ``vsr weights list`` and the default-model choice.

Model contract (DESIGN.md): an ``nn.Module`` with int attributes ``scale`` and ``multiple``; input
``(N, 3, H, W)`` float in [-1, 1] with H, W multiples of ``multiple``; output
``(N, 3, scale*H, scale*W)`` in [-1, 1], raw (before colour correction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vsr.errors import UsageError
from vsr.models import adcsr, classic, compact

Loader = Callable[[Path | None, torch.device, torch.dtype], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[], nn.Module]  # the architecture, randomly initialised or weight-free
    load: Loader  # (weights or None for the default location, device, dtype) -> ready model
    description: str  # one line for `vsr weights list` and --help
    needs_weights: bool = False  # True: cannot run without a weights file
    gpu_model: bool = False  # True: too slow for CPU use; never the default without a GPU
    attention: bool = False  # True: cost grows with tile area squared, so frames are tiled by default
    shipped: Path | None = None  # weights file inside the package, used when --weights is not given


def _no_weights(build: Callable[[], nn.Module]) -> Loader:
    def load(weights: Path | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
        if weights is not None:
            raise UsageError(f"this model takes no weights, got --weights {weights}")
        return build().to(device=device, dtype=dtype)

    return load


MODELS: dict[str, ModelEntry] = {
    "bicubic": ModelEntry(classic.build_bicubic, _no_weights(classic.build_bicubic), "bicubic ×4 (baseline)"),
    "lanczos": ModelEntry(classic.build_lanczos, _no_weights(classic.build_lanczos), "Lanczos-3 ×4 (baseline)"),
    "adcsr": ModelEntry(adcsr.build_adcsr, adcsr.loader("adcsr"),
                        "AdcSR ×4 (CVPR 2025), one-step diffusion-GAN, 456 M parameters; GPU",
                        needs_weights=True, gpu_model=True, attention=True),
    "adcsr-tiny": ModelEntry(adcsr.build_adcsr_tiny, adcsr.loader("adcsr-tiny"),
                             "AdcSR architecture at reduced width, for tests (no released weights)",
                             needs_weights=True, attention=True),
    "compact": ModelEntry(compact.build, compact.load,
                          "compact ×4 (189 k parameters, trained by vsr train; shipped; CPU-friendly)",
                          shipped=compact.SHIPPED_WEIGHTS),
}

DEFAULT_MODEL = "compact"  # the shipped model: beats bicubic on held-out photos (docs/compact_model_card.md)


def default_model(device: str | torch.device | None = None, weights: str | Path | None = None) -> tuple[str, str]:
    """The model ``vsr run`` uses without ``--model``, and a one-line reason for the user.

    ``adcsr`` when its weights are present (``weights`` given, or in the cache) and the device is a
    CUDA GPU (``None``/"auto": whether one is available); otherwise the bundled model.
    """
    from vsr import weights as W

    kind = torch.device(device).type if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    have = weights is not None or W.present("adcsr")
    if kind == "cuda" and torch.cuda.is_available() and have:
        return "adcsr", "using adcsr: its weights are present and a CUDA GPU is available"
    why = ("no CUDA GPU (adcsr is a GPU model)" if kind != "cuda" or not torch.cuda.is_available()
           else f"adcsr weights not found in {W.model_dir('adcsr')} (`vsr weights download adcsr`)")
    return DEFAULT_MODEL, f"using {DEFAULT_MODEL}: {why}"


def available_models() -> list[str]:
    return sorted(MODELS)


def load_model(
    name: str,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Build model ``name`` with its weights on ``device`` in ``dtype``, in eval mode, no grad."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}")
    model = MODELS[name].load(Path(weights) if weights is not None else None, torch.device(device), dtype)
    model.eval().requires_grad_(False)
    assert isinstance(model.scale, int) and isinstance(model.multiple, int), "model contract"
    return model
