"""``vsr weights``: list, inspect, download, install, convert and verify model weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsr.errors import UsageError, WeightsError
from vsr.models import MODELS, load_model
from vsr.models.adcsr import PRESETS, convert, read_weights
from vsr.models.adcsr.load import DTYPES
from vsr.models.info import info_lines, weights_info
from vsr.weights.store import (
    ADCSR_DECODER,
    ADCSR_NET,
    SOURCES,
    cache_dir,
    sha256_file,
    download,
    install,
    model_dir,
    read_manifest,
    resolve,
    verify_file,
)


def install_as(model: str, files: list[Path]) -> list[Path]:
    """Install the official ``files`` into ``model``'s cache folder, checked to load and match it."""
    return install(model_dir(model), (ADCSR_NET, ADCSR_DECODER), files,
                   lambda net, decoder: read_weights(model, net, check=True))


def verify(target: str, sha256: str | None = None, model: str = "adcsr") -> list[str]:
    """Check hashes (the given one, or those recorded at download) and load + key-check the weights.

    ``target``: a model name (its cache folder) or a path as ``--weights`` takes it.
    """
    if target in MODELS and target not in PRESETS:  # the shipped model, or one without weights
        entry = MODELS[target]
        if entry.shipped is None:
            return [f"{target}: built in, no weights file"]
        if sha256 is not None:
            verify_file(entry.shipped, sha256)
        load_model(target)
        return [f"{entry.shipped}: sha256 {sha256_file(entry.shipped)}; loads safely and matches {target}"]
    is_name = target in PRESETS
    model, path = (target, None) if is_name else (model, Path(target))
    lines = []
    if sha256 is not None:
        if path is None or not path.is_file():
            raise UsageError(f"--sha256 needs a file, got {target}")
        verify_file(path, sha256)
        lines.append(f"{path}: sha256 ok")
    kind, files = resolve(model, path)
    for f in files:
        recorded = read_manifest(f.parent).get(f.name)
        if recorded:
            verify_file(f, recorded["sha256"])
            lines.append(f"{f}: sha256 matches {recorded['origin']}")
        elif sha256 is None:
            lines.append(f"{f}: no recorded hash (not downloaded by vsr)")
    read_weights(model, path, check=True)
    lines.append(f"{', '.join(map(str, files))}: loads safely; keys and shapes match {model}")
    return lines


def list_lines() -> list[str]:

    lines = [f"cache: {cache_dir()}"]
    for name, entry in sorted(MODELS.items()):
        if entry.shipped is not None:
            lines.append(f"{name:12s} shipped with vsr: {entry.shipped} ({entry.shipped.stat().st_size / 1e6:.2f} MB)")
            continue
        if not entry.needs_weights:
            lines.append(f"{name:12s} built in (no weights file)")
            continue
        try:
            kind, files = resolve(name, None)
            size = sum(f.stat().st_size for f in files) / 1e6
            lines.append(f"{name:12s} present ({kind}, {size:.0f} MB): {', '.join(map(str, files))}")
        except WeightsError:
            how = f"`vsr weights download {name}`" if name in SOURCES else "no download; pass --weights"
            lines.append(f"{name:12s} missing in {model_dir(name)} ({how})")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vsr weights``."""
    sub = parser.add_subparsers(dest="weights_action", required=True,
                                metavar="{list,inspect,download,install,convert,verify}")
    sub.add_parser("list", help="known models, where their weights are, whether present")
    p = sub.add_parser("inspect", help="what a weights file holds: architecture, scale, parameters, dtype, sha256")
    p.add_argument("file", type=Path, help="a weights file (vsr's, AdcSR's, or any spandrel recognises) or folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("download", help="fetch official weights from Hugging Face, sha256-verified")
    p.add_argument("name", nargs="?", default="adcsr", choices=sorted(SOURCES))
    p.add_argument("--yes", action="store_true", help="accept the weights' licence without asking")
    p.add_argument("--revision", default=None, help="hub revision (default: main)")
    p = sub.add_parser("install", help="put official files copied by hand into the cache, checked")
    p.add_argument("files", nargs="+", type=Path, help=f"{' and '.join(f.name for f in SOURCES['adcsr'].files)}")
    p.add_argument("--model", choices=["adcsr", "adcsr-tiny"], default="adcsr", help="whose files they are")
    p = sub.add_parser("convert", help="official files → one safetensors file (config in its metadata)")
    p.add_argument("src", type=Path, help="folder with the official files, either file, or a .safetensors")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--model", choices=["adcsr", "adcsr-tiny"], default="adcsr")
    p = sub.add_parser("verify", help="check sha256 and that the weights load and match the model")
    p.add_argument("target", nargs="?", default="adcsr", help="model name (adcsr: its cache folder; compact: the shipped file) or a path")
    p.add_argument("--sha256", default=None, help="expected sha256 of the file given as target")
    p.add_argument("--model", choices=["adcsr", "adcsr-tiny"], default="adcsr", help="architecture of a path")


def main(args: argparse.Namespace) -> int:
    action = args.weights_action
    if action == "list":
        print("\n".join(list_lines()))
    elif action == "inspect":
        info = weights_info(args.file)
        print(json.dumps(info, indent=2) if args.json else "\n".join(info_lines(info)))
    elif action == "download":
        download(args.name, yes=args.yes, revision=args.revision)
    elif action == "install":
        done = install_as(args.model, args.files)
        print("\n".join(f"{p}: installed, sha256 recorded" for p in done))
    elif action == "convert":
        convert(args.src, args.dst, args.dtype, args.model)
        print(f"wrote {args.dst} ({args.dst.stat().st_size / 1e6:.0f} MB, {args.dtype})")
    elif action == "verify":
        print("\n".join(verify(args.target, args.sha256, args.model)))
    return 0
