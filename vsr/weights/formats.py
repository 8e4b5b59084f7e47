"""Weights files to tensors, knowing no architecture: safetensors (vsr's own format and any other), the
AdcSR authors' two pickles, and a digest of a state dict for provenance.

Everything here returns plain ``{name: tensor}`` dicts and metadata; turning them into a model is
the models' business (vsr.models). Pickles are read by vsr.weights.safe_load only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vsr.errors import WeightsError
from vsr.weights.safe_load import load_pickle

FORMAT = "vsr-adcsr-1"  # metadata "format" of the files `vsr weights convert` writes
MAX_METADATA_BYTES = 64 * 1024  # a safetensors header's metadata: a few hundred bytes in vsr's files
PICKLE_SUFFIXES = (".pkl", ".pth", ".pt", ".ckpt", ".bin")


def tensor_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a ``{str: tensor}`` state dict, or WeightsError naming what is not."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{what}: expected a state dict, found {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{what}: entries that are not tensors: {', '.join(bad[:10])}")
    return {k: v.detach() for k, v in obj.items()}


def load_official(net_path: Path, decoder_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The AdcSR authors' two files → (net state dict, the checkpoint's ``state_dict``), safely."""
    net = tensor_dict(load_pickle(net_path), str(net_path))
    ckpt = load_pickle(decoder_path)
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping):
        raise WeightsError(f"{decoder_path}: no state_dict in this checkpoint")
    decoder = tensor_dict({k: v for k, v in ckpt.items() if isinstance(k, str) and k.startswith("decoder.")},
                          str(decoder_path))
    return net, decoder


def write_safetensors(sd: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """Write atomically (``.partial``, then rename)."""
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(partial), metadata=dict(metadata))
    os.replace(partial, path)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file (no tensor read); WeightsError if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read safetensors: {e}") from None
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA_BYTES:
        raise WeightsError(f"{path}: safetensors metadata over {MAX_METADATA_BYTES} bytes; not a weights file "
                           "vsr reads")
    return metadata


def read_safetensors(path: Path, device: torch.device | str = "cpu",
                     expect_format: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata). Each tensor is copied out of the memory-mapped file into memory of its
    own: views into the file are not 64-byte aligned, and CPU kernels then take other (slower, and
    numerically different) paths. ``expect_format``: the metadata "format" the file must carry."""
    metadata = read_metadata(path)
    if expect_format is not None and metadata.get("format") != expect_format:
        raise WeightsError(f"{path}: not a file written by `vsr weights convert` (format "
                           f"{metadata.get('format')!r}, expected {expect_format!r})")
    device = torch.device(device)
    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for key in f.keys():
                t = f.get_tensor(key)
                out[key] = t.clone() if device.type == "cpu" else t.to(device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: cannot read safetensors: {e}") from None
    return out, metadata


def read_any(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict and metadata from a safetensors file or a (safely loaded) pickle: the pickle's
    state dict is the object itself, or its ``state_dict`` / ``params_ema`` / ``params`` / ``model``
    entry (the layouts community checkpoints use); other entries are ignored."""
    if path.suffix.lower() == ".safetensors":
        return read_safetensors(path)
    obj = load_pickle(path)
    if isinstance(obj, Mapping):
        for key in ("params_ema", "params", "state_dict", "model", "net", "generator"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        obj = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if any(
            isinstance(v, torch.Tensor) for v in obj.values()) else obj
    return tensor_dict(obj, str(path)), {}


def state_digest(state: Mapping[str, torch.Tensor]) -> str | None:
    """Short sha256 over a state dict's tensors in key order (dtype, shape and bytes); None when empty."""
    if not state:
        return None
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:12]
