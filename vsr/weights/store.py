"""Where weights live: the cache folder, the downloadable sources (Hugging Face, sha256-checked), the
manifest of what was downloaded, and finding a model's files in a folder or beside a given file.

Finding never loads a file; a file the user names is first checked by vsr.weights.safe_load (so a
hostile file is refused as such, before vsr complains about a missing sibling).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from huggingface_hub import HfApi, hf_hub_download

from vsr.errors import UsageError, WeightsError
from vsr.weights.safe_load import check_pickle


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
        check_pickle(folder)  # refused as what it is before the sibling is looked for
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
                       f"(or give `weights` DIR){hint}")


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


def by_hand(name: str, revision: str = "main") -> str:
    """How to install model ``name``'s files without a network here: their addresses on the hub, where
    they go, and the command that puts them there."""
    src = SOURCES[name]
    urls = " and ".join(f"https://huggingface.co/{src.repo_id}/resolve/{revision}/{f.repo_path}" for f in src.files)
    names = " ".join(f.name for f in src.files)
    return (f"to install by hand, fetch {urls} (Hugging Face repo {src.repo_id}) on a machine with network, "
            f"copy them here and run `vsr weights install {names}`, which checks them and puts them in "
            f"{model_dir(name)}")


def install(folder: Path, names: tuple[str, ...], files: list[Path], check: Callable[..., None]) -> list[Path]:
    """Copy ``files`` — the ones called ``names``, as `vsr weights download` would have fetched them —
    into a model's cache ``folder``, after ``check(*files in the order of names)`` read them safely;
    each recorded in the folder's manifest with its sha256."""
    given = {f.name: f for f in files}
    if sorted(given) != sorted(names) or len(given) != len(files):
        raise UsageError(f"`vsr weights install` takes {' and '.join(names)} (got {', '.join(map(str, files))})")
    for path in files:
        if not path.is_file():
            raise WeightsError(f"{path}: no such file")
    check(*(given[n] for n in names))
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for n in names:
        tmp = folder / f".{n}.install"
        shutil.copyfile(given[n], tmp)
        install_file(tmp, folder / n, sha256_file(tmp), f"installed from {given[n].resolve()}")
        done.append(folder / n)
    return done


def download(name: str, yes: bool = False, revision: str | None = None) -> None:
    if name not in SOURCES:
        raise UsageError(f"no download known for {name!r}; known: {', '.join(sorted(SOURCES))}")
    src, folder = SOURCES[name], model_dir(name)
    accept_licence(name, yes)
    rev = revision or src.revision
    try:
        infos = {i.path: i for i in HfApi().get_paths_info(src.repo_id, [f.repo_path for f in src.files], revision=rev)}
    except Exception as e:  # noqa: BLE001 - network or hub errors
        raise WeightsError(f"cannot reach Hugging Face ({type(e).__name__}); {by_hand(name, rev)}") from None
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
            raise WeightsError(f"download of {origin} failed ({type(e).__name__}); {by_hand(name, rev)}") from None
        install_file(fetched, dest, sha, origin)
        print(f"{dest}: sha256 verified")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"tip: `vsr weights convert {folder} {folder / CONVERTED.format(name=name)} --dtype fp16` loads faster")


