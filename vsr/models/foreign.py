"""Models from checkpoints people already have (Real-ESRGAN, Real-CUGAN, SwinIR, HAT, SPAN, DAT, OmniSR,
...), recognised from the state dict alone by spandrel (chaiNNer-org, MIT), the library chaiNNer and
ComfyUI load them with.

The file is read by vsr's own safe loader (vsr.weights.formats.read_any: no code from the file runs,
numpy scalars and argparse Namespaces beside the weights stay inert); spandrel only sees the tensors.
Its descriptor becomes vsr's: native scale, input multiple, precisions, tiling, and the value range
[0, 1] its models take, which the engine normalises into directly (no conversion layer).

spandrel is an optional extra (``pip install 'vsr[models]'``); only the ``spandrel`` package, not
``spandrel-extra-arches`` (whose licences differ).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from vsr.errors import WeightsError
from vsr.models.descriptor import ModelDescriptor
from vsr.weights.formats import read_any
from vsr.weights.store import sha256_file

EXTRA = "pip install 'vsr[models]'"  # what installs spandrel
PURPOSES = ("SR", "Restoration")  # spandrel's purposes vsr runs on video frames (FaceSR wants face crops)


def spandrel() -> ModuleType:
    """The spandrel module, imported on first use (it takes a few seconds and is optional)."""
    try:
        return importlib.import_module("spandrel")
    except ImportError as e:
        raise WeightsError(f"models from other projects' files are loaded by spandrel, which is not installed: "
                           f"{EXTRA}") from e


class SpandrelNet(nn.Module):
    """A spandrel model under vsr's contract: (N, 3, H, W) in [0, 1] → (N, 3, s·H, s·W) in [0, 1]."""

    def __init__(self, found: object) -> None:  # a spandrel ImageModelDescriptor
        super().__init__()
        self.net = found.model  # registered: .to(), .half(), state_dict() reach it
        self.found = found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # spandrel's call pads to the model's minimum or square size (the engine already padded to
        # its multiple), runs the architecture's own call and clamps to [0, 1]
        return self.found(x)  # (N, 3, H, W) -> (N, 3, s·H, s·W)


def recognise(state: dict[str, torch.Tensor], what: str) -> object:
    """spandrel's ImageModelDescriptor for ``state`` (on the CPU), or WeightsError saying why not.
    ``state`` is not changed (spandrel's loaders pop and add keys: they get a copy)."""
    sp = spandrel()
    try:
        found = sp.ModelLoader().load_from_state_dict(sp.canonicalize_state_dict(dict(state)))
    except sp.UnsupportedModelError as e:
        raise WeightsError(f"{what}: not a model vsr or spandrel {sp.__version__} recognises (neither vsr's formats, "
                           "AdcSR's files, nor a spandrel architecture)") from e
    except Exception as e:  # noqa: BLE001 - an architecture's own code failing on these tensors: a bad file
        raise WeightsError(f"{what}: spandrel recognised no architecture whose weights fit "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if int(found.scale) < 1:
        raise WeightsError(f"{what}: a {found.architecture.name} model of scale {found.scale}; vsr runs models "
                           "that keep or enlarge the frame (scale 1 or more)")
    if not isinstance(found, sp.ImageModelDescriptor):
        raise WeightsError(f"{what}: a {found.architecture.name} {found.purpose} model (it needs a mask); vsr "
                           "runs super-resolution and restoration models")
    if found.purpose not in PURPOSES:
        raise WeightsError(f"{what}: a {found.architecture.name} {found.purpose} model (face crops); vsr runs "
                           "super-resolution and restoration models on whole frames")
    if (found.input_channels, found.output_channels) != (3, 3):
        kind = {1: "a grayscale", 4: "an RGBA"}.get(found.input_channels, f"a {found.input_channels}-channel")
        raise WeightsError(f"{what}: {kind} model ({found.input_channels} in, {found.output_channels} out "
                           "channels); vsr upscales RGB video and runs 3-channel models only")
    return found


def describe_found(found: object, path: Path, sha256: str) -> ModelDescriptor:
    """vsr's descriptor for spandrel's ``found`` loaded from ``path``."""
    precisions = ("fp32",) + (("fp16",) if found.supports_half else ()) + (("bf16",) if found.supports_bfloat16 else ())
    tiling = found.tiling.name  # SUPPORTED | DISCOURAGED | INTERNAL
    return ModelDescriptor(
        name=path.name, scale=int(found.scale), multiple=int(found.size_requirements.multiple_of),
        value_range=(0.0, 1.0), tiling=False, precisions=precisions, architecture=found.architecture.name,
        color_fix="none", tiles_well=tiling == "SUPPORTED", file_sha256=sha256)


def read(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, file sha256) of the checkpoint ``path``, read safely (WeightsError if it is not a file)."""
    if path.is_dir():
        raise WeightsError(f"{path}: a folder; model spandrel takes one checkpoint file (.pth, .safetensors, ...)")
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    state, _ = read_any(path)
    return state, sha256_file(path)


@functools.lru_cache(maxsize=8)
def _describe(path: str, identity: tuple[int, ...]) -> ModelDescriptor:
    del identity  # the cache key: a file rewritten or replaced in place is read again
    state, sha256 = read(Path(path))
    return describe_found(recognise(state, path), Path(path), sha256)


def describe(path: Path) -> ModelDescriptor:
    """vsr's descriptor of the model in ``path`` (read and built on the CPU once per file version)."""
    try:
        st = path.stat()
    except OSError:
        raise WeightsError(f"{path}: no such file") from None
    return _describe(str(path.resolve()), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


def load(weights: Path | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The model in ``weights`` as a SpandrelNet on ``device`` in ``dtype``, its descriptor attached."""
    if weights is None:
        raise WeightsError("model spandrel runs a checkpoint file: give `weights`")
    state, sha256 = read(weights)
    found = recognise(state, str(weights))
    net = SpandrelNet(found).to(device=device, dtype=dtype)
    net.descriptor = describe_found(found, weights, sha256)
    return net
