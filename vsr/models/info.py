"""What a weights file holds, for ``vsr weights inspect``: the model it is detected as, its architecture,
native scale, parameter count, dtypes, the precisions it runs in and the file's sha256."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from vsr.models import compact
from vsr.models.adcsr.load import read_weights
from vsr.models.detect import SPANDREL, identify
from vsr.models.registry import describe
from vsr.weights.formats import read_any, read_metadata, read_safetensors
from vsr.weights.store import resolve, sha256_file

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


def state_of(name: str, path: Path) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """The tensors of one weight set of model ``name`` at ``path``, and the files they came from."""
    if name == SPANDREL:
        return read_any(path)[0], [path]
    if name == "compact":
        state, _ = read_safetensors(path)
        sets = compact.split_sets(state, read_metadata(path))
        return next(iter(sets.values())), [path]  # a grain/denoise pair: two sets of one architecture
    _, files = resolve(name, path)
    return read_weights(name, path)[0], list(files)


def weights_info(path: Path) -> dict:
    """A JSON-ready description of the weights at ``path`` (a file, or an AdcSR folder)."""
    name = identify(path)
    descriptor = describe(name, path)
    state, files = state_of(name, path)
    dtypes = Counter(DTYPE_NAMES.get(t.dtype, str(t.dtype).removeprefix("torch.")) for t in state.values()
                     if t.is_floating_point())
    return {
        "path": str(path),
        "model": name,  # what `--model` it runs as (`auto` finds the same)
        "architecture": descriptor.architecture,
        "scale": descriptor.scale,
        "input_multiple": descriptor.multiple,
        "parameters": sum(t.numel() for t in state.values() if t.is_floating_point()),
        "dtype": ", ".join(d for d, _ in dtypes.most_common()) or "none",
        "precisions": list(descriptor.precisions),
        "tiles_well": descriptor.tiles_well,
        "color_fix": descriptor.color_fix,
        "denoise_pair": name == "compact" and compact.has_denoise_pair(path),
        "files": [{"file": str(f), "bytes": f.stat().st_size,  # a checkpoint's hash is in its descriptor
                   "sha256": descriptor.file_sha256 if f == path and descriptor.file_sha256 else sha256_file(f)}
                  for f in files],
    }


def info_lines(info: dict) -> list[str]:
    """``weights_info`` for people."""
    lines = [f"{info['path']}: {info['architecture']} ×{info['scale']} (runs as --model {info['model']})",
             f"  parameters   {info['parameters']:,}",
             f"  dtype        {info['dtype']}",
             f"  precisions   {', '.join(info['precisions'])}",
             f"  input        multiple of {info['input_multiple']} (vsr pads); tiling "
             + ("fine" if info["tiles_well"] else "changes the result (whole frames by default)"),
             f"  colour fix   {info['color_fix']} by default"]
    if info["denoise_pair"]:
        lines.append("  denoise      grain/denoise pair (--denoise S)")
    lines += [f"  sha256       {f['sha256']}  {f['file']} ({f['bytes'] / 1e6:.2f} MB)" for f in info["files"]]
    return lines
