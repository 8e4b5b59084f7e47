"""AdcSR weights to a ready model: the authors' two files or vsr's safetensors, checked against the
architecture; and the conversion to safetensors behind ``vsr weights convert``.

File formats and locations are vsr.weights' business; this module maps their tensors onto vsr.models.
adcsr.model through the pure functions of vsr.models.adcsr.keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from vsr.errors import UsageError, WeightsError
from vsr.models.adcsr.keys import check_state_dict, from_official
from vsr.models.adcsr.model import FULL, TINY, AdcSR, AdcSRConfig
from vsr.weights.formats import (
    FORMAT,
    load_official,
    read_safetensors,
    write_safetensors,
)
from vsr.weights.store import resolve

PRESETS = {"adcsr": FULL, "adcsr-tiny": TINY}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}  # `vsr weights convert --dtype`


def stored_config(path: Path, metadata: Mapping[str, str]) -> AdcSRConfig:
    """The AdcSRConfig a converted file says it holds, checked field by field (WeightsError)."""
    try:
        return AdcSRConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise WeightsError(f"{path}: its config metadata is missing or invalid ({e})") from None


def read_weights(model: str, weights: Path | None, check: bool = False,
                 device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], AdcSRConfig]:
    """The state dict (vsr names) and config for preset ``model`` from ``weights`` (see store.resolve)."""
    cfg = PRESETS[model]
    kind, files = resolve(model, weights)
    if kind == "safetensors":
        sd, meta = read_safetensors(files[0], device, expect_format=FORMAT)
        stored = stored_config(files[0], meta)
        if stored != cfg:
            other = next((n for n, c in PRESETS.items() if c == stored), "an unknown configuration")
            raise WeightsError(f"{files[0]}: holds {other} weights, not {model}")
    else:
        sd = from_official(*load_official(*files))
    if check:
        with torch.device("meta"):
            check_state_dict(AdcSR(cfg), sd)
    return sd, cfg


def instantiate(sd: Mapping[str, torch.Tensor], cfg: AdcSRConfig, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> AdcSR:
    """Build on the meta device and adopt the tensors (cast/moved once): no random init, no extra copy."""
    with torch.device("meta"):
        model = AdcSR(cfg)
    check_state_dict(model, sd)
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, strict=True, assign=True)
    return model


def loader(model: str):
    """The registry's load function for preset ``model``."""

    def load(weights: Path | None, device: torch.device, dtype: torch.dtype) -> AdcSR:
        sd, cfg = read_weights(model, weights, device=device)
        return instantiate(sd, cfg, device, dtype)

    return load


def convert(src: Path, dst: Path, dtype: str = "fp16", model: str = "adcsr") -> None:
    """The weights at ``src`` (official pair, folder or converted file) → one safetensors file in
    ``dtype`` with the config in its metadata."""
    if dst.suffix != ".safetensors":
        raise UsageError(f"{dst}: the converted file must end in .safetensors")
    if dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    sd, cfg = read_weights(model, src)
    sd = {k: v.to(DTYPES[dtype]) for k, v in sd.items()}
    meta = {"format": FORMAT, "model": model, "config": json.dumps(cfg.to_dict()), "dtype": dtype,
            "source": str(src)}
    write_safetensors(sd, dst, meta)
