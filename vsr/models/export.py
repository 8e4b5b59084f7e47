"""ONNX export of any loaded model (vsr's own or one loaded through spandrel), for onnxruntime,
VapourSynth's vs-mlrt and TensorRT, and the check of an exported file against PyTorch.

The exported graph follows vs-mlrt's convention: input ``input`` (N, 3, H, W) RGB float in [0, 1],
output ``output`` (N, 3, s·H, s·W) in [0, 1]; a model working in another range (vsr's take [-1, 1])
gets the conversion inside the graph. H and W must be multiples of the model's input multiple; the
file's metadata says the scale, the multiple and the model. Shapes are dynamic (N, H, W) or fixed
(one tile size, what TensorRT engines prefer).

onnx, onnxscript (the exporter) and onnxruntime (the check) are the optional extra ``vsr[onnx]``.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from vsr.errors import ProcessingError, UsageError, VsrError
from vsr.models.descriptor import ModelDescriptor

EXTRA = "pip install 'vsr[onnx]'"  # what installs the exporter and onnxruntime
OPSET = 18  # opset 18: Resize with antialias, the opset onnxruntime 1.17+ and TensorRT 10 run
EXAMPLE_SIDE = 64  # traced example side (rounded up to the model's multiple) when the shape is dynamic
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
EXPORTERS = ("auto", "dynamo", "torchscript")
TRACE_ONLY = frozenset({"SPAN"})  # architectures torch.export crashes on (SIGSEGV, torch 2.14): traced instead
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}  # relative L2 error above which an export is wrong, not rounded


def optional(name: str) -> ModuleType:
    """An optional module of the ``vsr[onnx]`` extra, or UsageError naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UsageError(f"ONNX export needs {name}, which is not installed: {EXTRA}") from e


class UnitRange(nn.Module):
    """``model`` with [0, 1] input and output, whatever range it works in (a graph-side conversion)."""

    def __init__(self, model: nn.Module, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.model = model
        self.lo, self.span = float(value_range[0]), float(value_range[1] - value_range[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x * self.span + self.lo if (self.lo, self.span) != (0.0, 1.0) else x)  # (N, 3, sH, sW)
        return ((y - self.lo) / self.span).clamp(0.0, 1.0)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    input_shape: str  # as the file declares it, "?" for a dynamic size: "?x3x?x?" or "1x3x256x256"
    precision: str
    bytes: int
    exporter: str  # the one that wrote it (auto resolved)


def export_onnx(model: nn.Module, path: Path, *, tile: int | None = None, batch: int = 1,
                precision: str = "fp32", exporter: str = "auto") -> ExportReport:
    """Write ``model`` (loaded by vsr.load_model: it carries its descriptor) as ONNX to ``path``.

    ``tile`` None: dynamic batch, height and width; else a fixed (batch, 3, tile, tile) input.
    ``exporter``: ``dynamo`` (torch.export, the maintained one), ``torchscript`` (the tracing exporter,
    for architectures torch.export cannot take: SPAN rebuilds its weights in forward and crashes it)
    or ``auto`` (torchscript for those, dynamo for the rest).
    """
    if exporter not in EXPORTERS:
        raise UsageError(f"exporter {exporter!r}: use {', '.join(EXPORTERS)}")
    if batch < 1:
        raise UsageError(f"batch {batch}: an export takes at least one frame")
    if exporter == "auto":
        exporter = "torchscript" if model.descriptor.architecture in TRACE_ONLY else "dynamo"
    optional("onnx")
    descriptor: ModelDescriptor = model.descriptor
    if precision not in DTYPES:
        raise UsageError(f"precision {precision!r}: ONNX export writes {' or '.join(DTYPES)}")
    if precision not in descriptor.precisions:
        raise UsageError(f"{descriptor.label} computes in {', '.join(descriptor.precisions)}, not {precision}")
    m = descriptor.multiple
    if tile is not None and (tile <= 0 or tile % m):
        raise UsageError(f"tile {tile}: {descriptor.label} takes sides that are multiples of {m}")
    side = tile if tile is not None else math.ceil(EXAMPLE_SIDE / m) * m
    dtype = DTYPES[precision]
    first = next(iter(model.parameters()), torch.empty(0))
    source = model if dtype == first.dtype else copy.deepcopy(model)  # the caller's model stays as it is
    wrapped = UnitRange(source, descriptor.value_range).to(dtype=dtype).eval()
    example = torch.rand(batch, 3, side, side, device=first.device, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_onnx(wrapped, example, path, exporter, tile is None, metadata(descriptor, precision))
    except (VsrError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the exporter failing on an architecture's code
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise ProcessingError(f"the {exporter} exporter failed on {descriptor.architecture} "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                              f"try `--exporter {other}`" + ("" if tile else " or a fixed `--tile N`")) from e
    return ExportReport(path, input_shape(path), precision, path.stat().st_size, exporter)


def write_onnx(wrapped: nn.Module, example: torch.Tensor, path: Path, exporter: str, dynamic: bool,
               props: dict[str, str]) -> None:
    """``wrapped`` traced on ``example`` and written to ``path`` with ``props`` as metadata."""
    onnx = optional("onnx")
    with torch.no_grad():
        if exporter == "dynamo":
            optional("onnxscript")  # torch.onnx's dynamo exporter is written in it
            free = torch.export.Dim.AUTO  # symbolic where the architecture allows, else fixed (reported)
            program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["input"],
                                        output_names=["output"], opset_version=OPSET, external_data=False,
                                        dynamic_shapes=({0: free, 2: free, 3: free},) if dynamic else None)
            program.model.metadata_props.update(props)
            program.save(str(path), external_data=False)
        else:
            axes = {"input": {0: "batch", 2: "height", 3: "width"},
                    "output": {0: "batch", 2: "out_height", 3: "out_width"}} if dynamic else None
            torch.onnx.export(wrapped, (example,), str(path), dynamo=False, input_names=["input"],
                              output_names=["output"], opset_version=OPSET, dynamic_axes=axes)
            graph = onnx.load(str(path))
            for key, value in props.items():
                graph.metadata_props.add(key=key, value=value)
            onnx.save(graph, str(path))


def metadata(descriptor: ModelDescriptor, precision: str) -> dict[str, str]:
    """What an ONNX file says about its model (read by people and by tools that tile)."""
    return {"vsr_model": descriptor.label, "vsr_architecture": descriptor.architecture, "vsr_scale": str(descriptor.scale),
            "vsr_input_multiple": str(descriptor.multiple), "vsr_precision": precision,
            "vsr_io": json.dumps({"layout": "NCHW", "colour": "RGB", "range": [0, 1]})}


def input_shape(path: Path) -> str:
    """The input shape an ONNX file declares, "?" for dynamic sizes (an architecture whose code needs
    fixed sizes keeps the traced ones even when dynamic ones were asked for)."""
    onnx = optional("onnx")
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in dims)


def onnx_metadata(path: Path) -> dict[str, str]:
    onnx = optional("onnx")
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """``x`` (N, 3, H, W) float in [0, 1] through the exported file on onnxruntime's CPU provider."""
    ort = optional("onnxruntime")
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # its failures are reported here, once
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        want = np.float16 if "float16" in session.get_inputs()[0].type else np.float32
        return session.run(None, {"input": x.astype(want)})[0].astype(np.float32)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors (shape, type, missing kernels)
        raise ProcessingError(f"{path}: onnxruntime could not run it on a {x.shape[3]}x{x.shape[2]} input "
                              f"({str(e).splitlines()[0][:200]}); a fixed size (`vsr export --tile N`) may") from e


def check_onnx(model: nn.Module, path: Path, frame: np.ndarray, batch: int = 1) -> dict[str, float]:
    """Run ``frame`` ((H, W, 3) uint8/uint16, sides multiples of the model's; repeated to ``batch`` for
    a file of fixed batch) through PyTorch and the ONNX file; the largest absolute difference (of
    [0, 1] values) and the relative L2 error."""
    d: ModelDescriptor = model.descriptor
    h, w = frame.shape[:2]
    if h % d.multiple or w % d.multiple:
        raise UsageError(f"the check frame is {w}x{h}; {d.label} takes sides that are multiples of {d.multiple}")
    peak = float(np.iinfo(frame.dtype).max)
    x = (frame.astype(np.float32) / peak).transpose(2, 0, 1)[None]  # (H, W, 3) -> (1, 3, H, W)
    x = np.ascontiguousarray(np.repeat(x, batch, axis=0))  # (batch, 3, H, W)
    got = run_onnx(path, x)
    param = next(iter(model.parameters()), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    with torch.no_grad():
        want = UnitRange(model, d.value_range)(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()
    if got.shape != want.shape:
        raise ProcessingError(f"{path}: on a {w}x{h} input it gives {got.shape[3]}x{got.shape[2]}, PyTorch "
                              f"{want.shape[3]}x{want.shape[2]}: {d.architecture}'s traced code does not follow the "
                              "size; export a fixed size with `vsr export --tile N`")
    diff = got - want
    return {"max_abs": float(np.abs(diff).max()), "relative_l2": float(np.linalg.norm(diff) / np.linalg.norm(want))}
