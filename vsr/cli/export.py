"""``vsr export``: a model (vsr's, or any checkpoint spandrel recognises) as an ONNX file for
onnxruntime, VapourSynth vs-mlrt and TensorRT, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vsr.errors import ProcessingError, UsageError, WeightsError
from vsr.media.decode import VideoReader
from vsr.models import AUTO, available_models, load_model
from vsr.models.export import DTYPES, EXPORTERS, TOLERANCE, ExportReport, check_onnx, export_onnx

CHECK_SIDE = 96  # side of the synthetic check frame when no --check file is given
SECOND_SIZE = (53, 77)  # (H, W) of the second check of a dynamic export: odd sides, above the usual minimums


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"{', '.join(available_models())}, {AUTO} (with --weights), or a weights file")
    parser.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--weights", default=None, help="weights file or folder (vsr's, AdcSR's, or spandrel's)")
    parser.add_argument("--tile", type=int, default=None,
                        help="fixed input of --batch x 3 x N x N (default: dynamic batch, height and width)")
    parser.add_argument("--batch", type=int, default=1, help="batch of a fixed-shape export")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--exporter", choices=EXPORTERS, default="auto",
                        help="dynamo (torch.export), torchscript (tracing), or auto: torchscript for the "
                        "architectures torch.export cannot take (SPAN), else dynamo")
    parser.add_argument("--check", type=Path, default=None, metavar="MEDIA",
                        help="check on the first frame of this image or video (default: a synthetic frame); a "
                        "dynamic export is also checked at a second, odd size")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")


def synthetic(h: int, w: int) -> np.ndarray:
    """A gradient-and-noise (H, W, 3) uint8 frame: smooth ramps and every level, deterministic."""
    rng = np.random.default_rng(0)
    frame = np.stack([np.linspace(0, 255, w)[None, :].repeat(h, 0), np.linspace(0, 255, h)[:, None].repeat(w, 1),
                      rng.uniform(0, 255, (h, w))], axis=2)
    return frame.round().astype(np.uint8)


def check_frames(source: Path | None, multiple: int, fixed: tuple[int | None, int | None]) -> list[tuple[np.ndarray, str]]:
    """The frames an export is checked on: the source's first (cropped to the model's multiple, or to
    the file's fixed sides) or a synthetic one; for a dynamic size also a second, odd-shaped one (a
    traced size that does not generalise shows there)."""
    up = lambda n: n + (-n % multiple)  # noqa: E731 - rounded up to the model's multiple
    fh, fw = fixed
    if source is None:
        h, w = fh or up(CHECK_SIDE), fw or up(CHECK_SIDE)
        frames = [(synthetic(h, w), f"a synthetic {w}x{h} frame")]
    else:
        with VideoReader(source) as reader:
            first = next(iter(reader), None)
        if first is None:
            raise UsageError(f"{source}: no frame to check the export on")
        h, w = first.image.shape[:2]
        th, tw = fh or h - h % multiple, fw or w - w % multiple
        if th > h or tw > w or not th or not tw:
            raise UsageError(f"{source}: its {w}x{h} frames are smaller than the {tw}x{th} the model takes")
        frames = [(np.ascontiguousarray(first.image[:th, :tw]), f"the first frame of {source.name} ({tw}x{th})")]
    oh, ow = fh or up(SECOND_SIZE[0]), fw or up(SECOND_SIZE[1])
    if (oh, ow) != frames[0][0].shape[:2]:
        frames.append((synthetic(oh, ow), f"a synthetic {ow}x{oh} frame"))
    return frames


def main(args: argparse.Namespace) -> int:
    name, weights = args.model, args.weights
    if name not in (*available_models(), AUTO) and (Path(name).exists() or Path(name).suffix):
        if weights is not None:  # `vsr export 4x_Model.pth --onnx ...` takes its file from the name
            raise UsageError(f"{name} is a file: give it as the model or as --weights, not both")
        name, weights = AUTO, name
        if not Path(weights).exists():
            raise WeightsError(f"{weights}: no such file")
    model = load_model(name, weights)
    report: ExportReport = export_onnx(model, args.onnx, tile=args.tile, batch=args.batch, precision=args.precision,
                                       exporter=args.exporter)
    d = model.descriptor
    print(f"wrote {report.path}: {d.label} ×{d.scale}, input {report.input_shape} RGB in [0, 1] "
          f"(sides multiples of {d.multiple}), {report.precision}, {report.exporter} exporter, "
          f"{report.bytes / 1e6:.1f} MB")
    n, _, h, w = report.input_shape.split("x")
    fixed = (None if h == "?" else int(h), None if w == "?" else int(w))
    if args.tile is None and fixed != (None, None):
        print(f"note: {d.architecture}'s code fixes its traced size; the file takes {report.input_shape} only")
    if args.no_check:
        return 0
    try:
        for frame, what in check_frames(args.check, d.multiple, fixed):
            err = check_onnx(model, args.onnx, frame, batch=1 if n == "?" else int(n))
            print(f"onnxruntime vs PyTorch on {what}: max abs error {err['max_abs']:.2e}, relative "
                  f"{err['relative_l2']:.2e} (of [0, 1] values)")
            if err["relative_l2"] > TOLERANCE[args.precision]:
                raise ProcessingError(f"{args.onnx}: differs from PyTorch on {what} (relative error "
                                      f"{err['relative_l2']:.1e}, over {TOLERANCE[args.precision]:.0e}): "
                                      f"{d.architecture}'s traced code does not hold at that size; export a "
                                      "fixed size with --tile N")
    except ProcessingError as e:
        args.onnx.unlink(missing_ok=True)  # a file known to be wrong is not left to be used
        raise ProcessingError(f"{e} (the file was removed)") from e
    return 0
