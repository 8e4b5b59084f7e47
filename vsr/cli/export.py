"""``vsr export``: a model (vsr's, or any checkpoint spandrel recognises) as an ONNX file for
onnxruntime, VapourSynth vs-mlrt and TensorRT, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vsr.errors import UsageError
from vsr.media.decode import VideoReader
from vsr.models import AUTO, available_models, load_model
from vsr.models.export import DTYPES, EXPORTERS, ExportReport, check_onnx, export_onnx

CHECK_SIDE = 96  # side of the synthetic check frame when no --check file is given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"{', '.join(available_models())}, {AUTO} (with --weights), or a weights file")
    parser.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--weights", default=None, help="weights file or folder (vsr's, AdcSR's, or spandrel's)")
    parser.add_argument("--tile", type=int, default=None,
                        help="fixed input of --batch x 3 x N x N (default: dynamic batch, height and width)")
    parser.add_argument("--batch", type=int, default=1, help="batch of a fixed-shape export")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--exporter", choices=EXPORTERS, default="dynamo",
                        help="dynamo (torch.export) or torchscript (tracing; for architectures torch.export "
                        "cannot take, such as SPAN)")
    parser.add_argument("--check", type=Path, default=None, metavar="MEDIA",
                        help="check on the first frame of this image or video (default: a synthetic frame)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")


def check_frame(source: Path | None, multiple: int, fixed: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    """The frame the export is checked on: the source's first, cropped to the model's multiple (or to
    the file's fixed height and width), or a synthetic gradient-and-noise frame."""
    if source is None:
        side = CHECK_SIDE + (-CHECK_SIDE % multiple)
        h, w = fixed or (side, side)
        rng = np.random.default_rng(0)
        frame = np.stack([np.linspace(0, 255, w)[None, :].repeat(h, 0), np.linspace(0, 255, h)[:, None].repeat(w, 1),
                          rng.uniform(0, 255, (h, w))], axis=2)
        return frame.round().astype(np.uint8), f"a synthetic {w}x{h} frame"
    with VideoReader(source) as reader:
        first = next(iter(reader), None)
    if first is None:
        raise UsageError(f"{source}: no frame to check the export on")
    h, w = first.image.shape[:2]
    th, tw = fixed or (h - h % multiple, w - w % multiple)
    if th > h or tw > w or not th or not tw:
        raise UsageError(f"{source}: its {w}x{h} frames are smaller than the {tw}x{th} the model takes")
    return np.ascontiguousarray(first.image[:th, :tw]), f"the first frame of {source.name} ({tw}x{th})"


def main(args: argparse.Namespace) -> int:
    name, weights = args.model, args.weights
    if name not in (*available_models(), AUTO) and Path(name).exists():  # `vsr export 4x_Model.pth --onnx ...`
        name, weights = AUTO, name
    model = load_model(name, weights)
    report: ExportReport = export_onnx(model, args.onnx, tile=args.tile, batch=args.batch, precision=args.precision,
                                       exporter=args.exporter)
    d = model.descriptor
    print(f"wrote {report.path}: {d.label} ×{d.scale}, input {report.input_shape} RGB in [0, 1] "
          f"(sides multiples of {d.multiple}), {report.precision}, {report.bytes / 1e6:.1f} MB")
    n, _, h, w = report.input_shape.split("x")
    fixed = (int(h), int(w)) if "?" not in (h, w) else None
    if args.tile is None and fixed:
        print(f"note: {d.architecture}'s code fixes its traced size; the file takes {report.input_shape} only")
    if not args.no_check:
        frame, what = check_frame(args.check, d.multiple, fixed)
        err = check_onnx(model, args.onnx, frame, batch=1 if n == "?" else int(n))
        print(f"onnxruntime vs PyTorch on {what}: max abs error {err['max_abs']:.2e}, relative "
              f"{err['relative_l2']:.2e} (of [0, 1] values)")
    return 0
