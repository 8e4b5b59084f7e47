"""Weights: cache directory, download + sha256, safe loading, conversion; the ``vsr weights`` command.

Safety: the authors' files are pickles, read without running any code from them by the restricted
unpickler in vsr.safe_pickle. Converted files are safetensors.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from vsr.errors import UsageError, WeightsError
from vsr.safe_pickle import load_pickle


def cache_dir() -> Path:
    """``$VSR_HOME`` or ``~/.cache/vsr``."""
    return Path(os.environ.get("VSR_HOME") or Path.home() / ".cache" / "vsr")


def model_dir(name: str) -> Path:
    return cache_dir() / name


# --- registry of downloadable weights -----------------------------------------------------------

LICENCE_ADCSR = """\
AdcSR weights (Hugging Face Guaishou74851/AdcSR, by Bin Chen, Gehui Li, Rongyuan Wu et al.)
are distilled from Stable Diffusion 2.1-base and carry its licence, the CreativeML Open RAIL++-M
licence: https://huggingface.co/stabilityai/stable-diffusion-2-1-base/blob/main/LICENSE-MODEL
(the authors' code is Apache-2.0). In short: you may use, modify and redistribute the weights and
their outputs, commercially too, but you must not use them for the uses restricted in Attachment A
of that licence (e.g. breaking the law, harming minors, defamation or harmful false information,
harassment, discrimination, fully automated decisions that harm people's legal rights, medical
advice), you must pass those restrictions on to anyone you give the weights to, and you are
responsible for the outputs you make. Read the licence itself before use."""


@dataclass(frozen=True)
class RemoteFile:
    repo_path: str  # path inside the Hugging Face repository
    name: str  # file name in the model's cache folder (what the loaders look for)


@dataclass(frozen=True)
class WeightsSource:
    repo_id: str
    files: tuple[RemoteFile, ...]
    licence: str
    revision: str = "main"


ADCSR_NET, ADCSR_DECODER = "net_params_200.pkl", "halfDecoder.ckpt"
SOURCES: dict[str, WeightsSource] = {
    "adcsr": WeightsSource(
        "Guaishou74851/AdcSR",
        (RemoteFile("weight/net_params_200.pkl", ADCSR_NET),
         RemoteFile("weight/pretrained/halfDecoder.ckpt", ADCSR_DECODER)),
        LICENCE_ADCSR,
    ),
}
CONVERTED = "{name}.safetensors"  # preferred file in a model's folder, written by `vsr weights convert`
MANIFEST = "manifest.json"  # per folder: sha256 and origin of every file vsr downloaded


# --- the authors' files -------------------------------------------------------------------------

def tensor_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{what}: expected a state dict, found {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{what}: entries that are not tensors: {', '.join(bad[:10])}")
    return {k: v.detach() for k, v in obj.items()}


def load_official(net_path: Path, decoder_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The authors' two files → (net state dict, the checkpoint's ``state_dict``), safely."""
    net = tensor_dict(load_pickle(net_path), str(net_path))
    ckpt = load_pickle(decoder_path)
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping):
        raise WeightsError(f"{decoder_path}: no state_dict in this checkpoint")
    decoder = tensor_dict({k: v for k, v in ckpt.items() if isinstance(k, str) and k.startswith("decoder.")},
                          str(decoder_path))
    return net, decoder


# --- safetensors --------------------------------------------------------------------------------

FORMAT = "vsr-adcsr-1"


def write_safetensors(sd: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    from safetensors.torch import save_file

    partial = path.with_name(path.name + ".partial")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(partial), metadata=dict(metadata))
    os.replace(partial, path)


def read_safetensors(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise WeightsError(f"{path}: not a file written by `vsr weights convert` (format "
                               f"{metadata.get('format')!r}, expected {FORMAT!r})")
        return load_file(str(path), device=str(device)), metadata
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot read safetensors: {e}") from None


# --- finding a model's files --------------------------------------------------------------------

def resolve(name: str, weights: Path | None) -> tuple[str, tuple[Path, ...]]:
    """``("safetensors", (file,))`` or ``("official", (net_params, halfDecoder))`` for model ``name``.

    ``weights``: a folder (converted file preferred, else the official pair), either official file
    (the other is looked up beside it), or a ``.safetensors`` file; None: the cache folder.
    """
    folder = model_dir(name) if weights is None else Path(weights)
    if weights is not None and not folder.exists():
        raise WeightsError(f"{folder}: no such file or folder")
    if folder.is_file():
        if folder.suffix == ".safetensors":
            return "safetensors", (folder,)
        if folder.name == ADCSR_DECODER or folder.suffix == ".ckpt":
            pair = (folder.parent / ADCSR_NET, folder)
        else:
            pair = (folder, folder.parent / ADCSR_DECODER)
        missing = [p for p in pair if not p.is_file()]
        if missing:
            raise WeightsError(f"{missing[0]}: not found; it must sit beside {folder} "
                               f"({ADCSR_NET} and {ADCSR_DECODER} are loaded together)")
        return "official", pair
    converted = folder / CONVERTED.format(name=name)
    if converted.is_file():
        return "safetensors", (converted,)
    pair = (folder / ADCSR_NET, folder / ADCSR_DECODER)
    if all(p.is_file() for p in pair):
        return "official", pair
    hint = f" or run `vsr weights download {name}`" if name in SOURCES else ""
    raise WeightsError(f"{name} weights not found in {folder}: put {ADCSR_NET} and {ADCSR_DECODER} there "
                       f"(or pass --weights DIR){hint}")


def present(name: str) -> bool:
    try:
        resolve(name, None)
        return True
    except WeightsError:
        return False


# --- hashes, manifest, download -----------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected.lower():
        raise WeightsError(f"{path}: sha256 {got} does not match the expected {expected.lower()}")


def read_manifest(folder: Path) -> dict[str, dict]:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise WeightsError(f"{folder / MANIFEST}: unreadable: {e}") from None


def install_file(downloaded: Path, dest: Path, sha256: str, origin: str) -> None:
    """Move a fetched file into place only if it matches the hash the hub reported; record it."""
    try:
        verify_file(downloaded, sha256)
    except WeightsError:
        downloaded.unlink(missing_ok=True)
        raise
    os.replace(downloaded, dest)
    manifest = read_manifest(dest.parent)
    manifest[dest.name] = {"sha256": sha256.lower(), "size": dest.stat().st_size, "origin": origin}
    (dest.parent / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def accept_licence(name: str, yes: bool) -> None:
    """Show the licence before the first download; require --yes or a typed 'yes' on a terminal."""
    src, marker = SOURCES[name], model_dir(name) / "LICENCE-ACCEPTED"
    if marker.exists():
        return
    print(src.licence + "\n", flush=True)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"accept the licence above to download {name}: rerun with --yes")
        if input("Type 'yes' to accept these terms and download: ").strip().lower() != "yes":
            raise UsageError("licence not accepted; nothing downloaded")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"accepted {datetime.datetime.now().isoformat(timespec='seconds')}\n")


def download(name: str, yes: bool = False, revision: str | None = None) -> None:
    if name not in SOURCES:
        raise UsageError(f"no download known for {name!r}; known: {', '.join(sorted(SOURCES))}")
    src, folder = SOURCES[name], model_dir(name)
    accept_licence(name, yes)
    from huggingface_hub import HfApi, hf_hub_download

    rev = revision or src.revision
    try:
        infos = {i.path: i for i in HfApi().get_paths_info(src.repo_id, [f.repo_path for f in src.files], revision=rev)}
    except Exception as e:  # noqa: BLE001 - network or hub errors
        raise WeightsError(f"cannot reach Hugging Face repo {src.repo_id}: {e}") from None
    staging = folder / ".download"
    for f in src.files:
        info, dest = infos.get(f.repo_path), folder / f.name
        sha = getattr(getattr(info, "lfs", None), "sha256", None)
        if sha is None:
            raise WeightsError(f"{src.repo_id}/{f.repo_path}: the hub reports no such file or no sha256 for it")
        origin = f"hf://{src.repo_id}/{f.repo_path}@{rev}"
        if dest.is_file() and sha256_file(dest) == sha:
            print(f"{dest}: present, sha256 verified")
            continue
        print(f"downloading {origin} ({info.size / 1e6:.0f} MB)", flush=True)
        try:
            fetched = Path(hf_hub_download(src.repo_id, f.repo_path, revision=rev, local_dir=staging))
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"download of {origin} failed: {e}") from None
        install_file(fetched, dest, sha, origin)
        print(f"{dest}: sha256 verified")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"tip: `vsr weights convert {folder} {folder / CONVERTED.format(name=name)} --dtype fp16` loads faster")


# --- convert, verify, list ----------------------------------------------------------------------

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def convert(src: Path, dst: Path, dtype: str = "fp16", model: str = "adcsr") -> None:
    from vsr.models import adcsr

    if dst.suffix != ".safetensors":
        raise UsageError(f"{dst}: the converted file must end in .safetensors")
    sd, cfg = adcsr.read_weights(model, src)
    sd = {k: v.to(DTYPES[dtype]) for k, v in sd.items()}
    meta = {"format": FORMAT, "model": model, "config": json.dumps(cfg.to_dict()), "dtype": dtype,
            "source": str(src)}
    write_safetensors(sd, dst, meta)


def verify(target: str, sha256: str | None = None, model: str = "adcsr") -> list[str]:
    """Check hashes (the given one, or those recorded at download) and load + key-check the weights.

    ``target``: a model name (its cache folder) or a path as ``--weights`` takes it.
    """
    from vsr.models import adcsr

    is_name = target in adcsr.PRESETS
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
    adcsr.read_weights(model, path, check=True)
    lines.append(f"{', '.join(map(str, files))}: loads safely; keys and shapes match {model}")
    return lines


def list_lines() -> list[str]:
    from vsr.models import MODELS

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
    sub = parser.add_subparsers(dest="weights_action", required=True, metavar="{list,download,convert,verify}")
    sub.add_parser("list", help="known models, where their weights are, whether present")
    p = sub.add_parser("download", help="fetch official weights from Hugging Face, sha256-verified")
    p.add_argument("name", nargs="?", default="adcsr", choices=sorted(SOURCES))
    p.add_argument("--yes", action="store_true", help="accept the weights' licence without asking")
    p.add_argument("--revision", default=None, help="hub revision (default: main)")
    p = sub.add_parser("convert", help="official files → one safetensors file (config in its metadata)")
    p.add_argument("src", type=Path, help="folder with the official files, either file, or a .safetensors")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    p.add_argument("--model", choices=["adcsr", "adcsr-tiny"], default="adcsr")
    p = sub.add_parser("verify", help="check sha256 and that the weights load and match the model")
    p.add_argument("target", nargs="?", default="adcsr", help="model name (its cache folder) or a path")
    p.add_argument("--sha256", default=None, help="expected sha256 of the file given as target")
    p.add_argument("--model", choices=["adcsr", "adcsr-tiny"], default="adcsr", help="architecture of a path")


def main(args: argparse.Namespace) -> int:
    action = args.weights_action
    if action == "list":
        print("\n".join(list_lines()))
    elif action == "download":
        download(args.name, yes=args.yes, revision=args.revision)
    elif action == "convert":
        convert(args.src, args.dst, args.dtype, args.model)
        print(f"wrote {args.dst} ({args.dst.stat().st_size / 1e6:.0f} MB, {args.dtype})")
    elif action == "verify":
        print("\n".join(verify(args.target, args.sha256, args.model)))
    return 0
