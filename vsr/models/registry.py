"""The model registry: every upscaler vsr runs by name, as a descriptor (what the engine needs to know)
and a spec (how to build and load it). It feeds ``--model``'s choices, ``vsr weights list`` and the
default-model choice.

Model contract: an ``nn.Module`` taking ``(N, 3, H, W)`` float in the descriptor's ``value_range``
with H, W multiples of ``multiple``, giving ``(N, 3, scale·H, scale·W)`` in the same range, raw
(before colour correction). ``load_model`` returns the module with its descriptor attached as
``model.descriptor``; the engine reads that, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vsr.errors import UsageError
from vsr.models.descriptor import ModelDescriptor
from vsr.models import classic, compact, foreign
from vsr.models.adcsr import build_adcsr, build_adcsr_tiny, loader
from vsr.models.detect import SPANDREL, identify
from vsr.weights.store import model_dir, present

Loader = Callable[..., nn.Module]  # (weights or None, device, dtype, **options) -> module


@dataclass(frozen=True)
class ModelSpec:
    descriptor: ModelDescriptor
    build: Callable[[], nn.Module]  # the architecture, randomly initialised or weight-free
    load: Loader  # (weights or None for the default location, device, dtype[, denoise]) -> module
    description: str  # one line for `vsr weights list` and --help
    needs_weights: bool = False  # cannot run without a weights file
    gpu_model: bool = False  # too slow for CPU use; never the default without a GPU
    shipped: Path | None = None  # weights file inside the package, used when no weights are given
    downloads: tuple[str, ...] = field(default_factory=tuple)  # `vsr weights download` sources
    describe: Callable[[Path], ModelDescriptor] | None = None  # the descriptor depends on the weights file


def _no_weights(build: Callable[[], nn.Module]) -> Loader:
    def load(weights: Path | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
        if weights is not None:
            raise UsageError(f"this model takes no weights, got weights={weights}")
        return build().to(device=device, dtype=dtype)

    return load


def _compact(weights: Path | None, device: torch.device, dtype: torch.dtype, denoise: float | None = None) -> nn.Module:
    return compact.load(weights, device, dtype, denoise)


def _spandrel_build() -> nn.Module:
    raise UsageError("model spandrel is built from its checkpoint file: give `weights`")


def _classic(name: str, build: Callable[[], nn.Module], text: str, integer: bool) -> ModelSpec:
    d = ModelDescriptor(name, classic.SCALE, shifts_colour=False, interpolates=True, integer_resize=integer,
                        architecture=text)
    return ModelSpec(d, build, _no_weights(build), f"{text} ×4 (baseline)")


MODELS: dict[str, ModelSpec] = {
    "bicubic": _classic("bicubic", classic.build_bicubic, "bicubic", integer=True),
    "lanczos": _classic("lanczos", classic.build_lanczos, "Lanczos-3", integer=False),
    "adcsr": ModelSpec(ModelDescriptor("adcsr", 4, 16, tiling=True, architecture="AdcSR"), build_adcsr,
                       loader("adcsr"), "AdcSR ×4 (CVPR 2025), one-step diffusion-GAN, 456 M parameters; GPU",
                       needs_weights=True, gpu_model=True, downloads=("adcsr",)),
    "adcsr-tiny": ModelSpec(ModelDescriptor("adcsr-tiny", 4, 16, tiling=True, architecture="AdcSR"),
                            build_adcsr_tiny, loader("adcsr-tiny"),
                            "AdcSR architecture at reduced width, for tests (no released weights)", needs_weights=True),
    "compact": ModelSpec(ModelDescriptor("compact", 4, architecture="SRVGGNetCompact-like", denoise=True),
                         compact.build, _compact,
                         "compact ×4 (189 k parameters, trained by vsr train; shipped; CPU-friendly)",
                         shipped=compact.SHIPPED_WEIGHTS),
    SPANDREL: ModelSpec(ModelDescriptor(SPANDREL, 4, value_range=(0.0, 1.0), color_fix="none",
                                        architecture="any architecture spandrel recognises"),
                        _spandrel_build, foreign.load,
                        "a checkpoint of Real-ESRGAN, Real-CUGAN, SwinIR, HAT, SPAN, ... (--weights FILE; "
                        "vsr[models])", needs_weights=True, describe=foreign.describe),
}
AUTO = "auto"  # `--model auto`: the model the weights file holds (vsr.models.detect)

DEFAULT_MODEL = "compact"  # the shipped model (docs/compact_model_card.md)


def available_models() -> list[str]:
    """Names ``load_model`` takes (and ``auto``, with a weights file)."""
    return sorted(MODELS)


def choose(name: str | None, device: str | torch.device | None = None,
           weights: str | Path | None = None) -> tuple[str, str]:
    """The registry name a run uses and a one-line reason ("" when the user named it).

    ``name`` None or ``auto`` with ``weights``: the model that file holds (vsr.models.detect); without
    weights: ``default_model``.
    """
    if name not in (None, AUTO):
        spec(name)  # an unknown name fails here
        if weights is not None and name in (SPANDREL, "compact") and Path(weights).is_file():
            found = identify(Path(weights))  # these two read files others make: say so when it is the other's
            if found != name:
                raise UsageError(f"{weights} holds {'a model spandrel loads' if found == SPANDREL else found + ' weights'}"
                                 f", not {name} weights; drop `model` (or use auto) to run it")
        return name, ""
    if weights is None:
        return default_model(device)
    found = identify(Path(weights))
    if found == SPANDREL:
        return found, f"{weights}: loading it through spandrel (neither vsr's format nor AdcSR's files)"
    return found, f"using {found}: detected from {weights}"


def describe(name: str, weights: str | Path | None = None) -> ModelDescriptor:
    """The descriptor of model ``name`` with ``weights`` (a spandrel file is read for it)."""
    entry = spec(name)
    if entry.describe is None:
        return entry.descriptor
    if weights is None:
        raise UsageError(f"model {name} runs a checkpoint file: give `weights`")
    return entry.describe(Path(weights))


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}")
    return MODELS[name]


def default_model(device: str | torch.device | None = None) -> tuple[str, str]:
    """The model ``vsr run`` uses without a model name or weights file, and a one-line reason for the
    user: ``adcsr`` when its weights are in the cache and the device is a CUDA GPU (``None``/"auto":
    whether one is available); otherwise the bundled model. (A weights file is identified instead:
    ``choose``.)"""
    cuda = torch.cuda.is_available()
    kind = torch.device(device).type if device not in (None, "auto") else ("cuda" if cuda else "cpu")
    if kind == "cuda" and cuda and present("adcsr"):
        return "adcsr", "using adcsr: its weights are present and a CUDA GPU is available"
    why = ("no CUDA GPU (adcsr is a GPU model)" if kind != "cuda" or not cuda
           else f"adcsr weights not found in {model_dir('adcsr')} (`vsr weights download adcsr`)")
    return DEFAULT_MODEL, f"using {DEFAULT_MODEL}: {why}"


def attach(model: nn.Module, descriptor: ModelDescriptor) -> nn.Module:
    """``model`` in eval mode without gradients, carrying ``descriptor``."""
    model.eval().requires_grad_(False)
    model.descriptor = descriptor
    return model


def load_model(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, denoise: float | None = None) -> nn.Module:
    """Model ``name`` with its weights on ``device`` in ``dtype``, eval mode, no grad, ``.descriptor`` set.

    ``name`` ``auto``: the model ``weights`` holds (vsr's, AdcSR's or any spandrel recognises).
    ``weights``: a file or folder (None: the model's default location); ``denoise``: the strength S
    in [0, 1] for models with a grain/denoise pair (compact), refused for the others.
    """
    if name == AUTO:
        name, _ = choose(name, device, weights)
    entry = spec(name)
    options = {}
    if denoise is not None:
        if not entry.descriptor.denoise:
            raise UsageError(f"denoise applies to models with a grain/denoise weight pair (compact), not {name}")
        options["denoise"] = float(denoise)
    model = entry.load(Path(weights) if weights is not None else None, torch.device(device), dtype, **options)
    return attach(model, getattr(model, "descriptor", None) or entry.descriptor)  # a file's own, or the name's
