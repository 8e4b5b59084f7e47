"""Loading pickled weights (``.pkl``, ``.ckpt``, ``.pth``, torch.save files) without running code from them.

What vsr trusts in a pickle (SECURITY.md): tensors, storages and plain containers, rebuilt by PyTorch's
own ``weights_only`` unpickler. A file is checked in three steps before any of it is built:

1. A TorchScript archive (a zip with ``constants.pkl`` or a ``code/`` folder) is refused outright:
   ``torch.load`` would hand it to ``torch.jit.load``, which runs the archive's ``__setstate__``.
2. Every global the pickle names is listed from its opcodes (pickletools; nothing is executed).
   Standard-library and builtin callables (``os.system``, ``builtins.eval``, ``subprocess.*``, ...)
   refuse the file; a few plain-data stdlib classes (``argparse.Namespace``,
   paths, dates) and every class of another package (pytorch_lightning's callbacks, numpy scalars,
   omegaconf nodes) become inert :class:`Placeholder` objects that record their arguments and never
   import or call anything.
3. ``torch.load(weights_only=True)`` builds the file with exactly that allow-list, given in the
   ``(object, "module.Name")`` form so classes that are not installed need not be importable.

Names under ``torch.`` and the few standard ones PyTorch allows by default are left to PyTorch's own
allow-list, which is what finally enforces the list: a global the scan missed cannot be built either.
A plain pickle that is not a torch.save file (``pickle.dump``) is scanned the same way, then refused
as not a PyTorch file (it cannot hold tensors without nesting another torch.load).
"""

from __future__ import annotations

import pickletools
import sys
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import IO, Any

import torch
from torch.serialization import safe_globals

from vsr.errors import WeightsError

# Standard-library classes that are plain data in checkpoints: rebuilt as placeholders, not refused.
INERT_STDLIB = frozenset({
    "argparse.Namespace", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath", "pathlib.Path", "datetime.datetime", "datetime.date", "datetime.timedelta",
    "uuid.UUID", "collections.defaultdict", "collections.Counter", "typing.Any", "enum.Enum",
})
# Builtins that only build data: allowed as themselves.
PLAIN_BUILTINS = {"builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice,
                  "builtins.complex": complex, "builtins.bytearray": bytearray, "builtins.range": range}
TORCHSCRIPT_MARKERS = ("constants.pkl", "/code/")  # members a torch.jit.save archive has, torch.save's not
# What PyTorch's weights-only unpickler allows by default besides torch.* names (torch 2.4 to 2.14).
TORCH_DEFAULTS = frozenset({"_codecs.encode", "builtins.bytearray", "builtins.complex", "builtins.set",
                            "collections.Counter", "collections.OrderedDict"})
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a pre-1.6 (non-zip) torch.save file
STRING_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                        "BINUNICODE8"})


class Placeholder:
    """Stands in for a class a pickle names but vsr does not trust: records what it was given."""

    module = name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {self.module}.{self.name}>"


_placeholders: dict[str, type] = {}


def placeholder(qualified: str) -> type:
    """The (cached) inert class standing in for ``module.Name``."""
    if qualified not in _placeholders:
        module, _, name = qualified.rpartition(".")
        _placeholders[qualified] = type(f"Placeholder[{qualified}]", (Placeholder,), {"module": module, "name": name})
    return _placeholders[qualified]


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects), for placeholder classes only."""
    if isinstance(cls, type) and issubclass(cls, Placeholder) and base is object:
        obj = cls.__new__(cls)
        obj.args = (state,)
        return obj
    raise WeightsError(f"copyreg._reconstructor of {cls!r} in a pickle")


def refuse_torchscript(path: Path) -> None:
    """WeightsError if ``path`` is a TorchScript archive (code, not weights)."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{path}: cannot read weights: damaged zip ({e})") from e
    if any(n.endswith(TORCHSCRIPT_MARKERS[0]) or TORCHSCRIPT_MARKERS[1] in f"/{n}" for n in names):
        raise WeightsError(f"{path}: refused: a TorchScript archive holds a program (code/, constants.pkl), "
                           "not only weights; vsr never runs code from a weights file")


def _python3_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 (and PyTorch's unpickler) resolve a protocol-2 pickle's global."""
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    else:
        module = IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _globals_in(stream: IO[bytes], found: set[str]) -> bool:
    """Add the globals one pickle at ``stream``'s position names to ``found`` (its opcodes only, nothing
    run); STACK_GLOBAL's two strings are followed through the memo. True if it was the legacy magic."""
    memo: dict[int, Any] = {}
    pushed: list[Any] = []
    ops = []
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        ops.append((name, arg))
        if name in ("GLOBAL", "INST"):
            found.add(_python3_name(*arg.split(" ", 1)))
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            found.add(_python3_name(module, attr) if isinstance(module, str) and isinstance(attr, str)
                      else "<hidden>.<name>")
        elif name in STRING_OPS:
            pushed.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
    return any(name.startswith("LONG") and arg == LEGACY_MAGIC for name, arg in ops[:3])


def pickle_globals(path: Path) -> tuple[set[str], str]:
    """Every global the pickles of ``path`` name, and the file's kind: zip | legacy | plain."""
    found: set[str] = set()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if member.endswith(".pkl"):
                    with z.open(member) as f:
                        _globals_in(f, found)
        return found, "zip"
    with open(path, "rb") as f:
        legacy = _globals_in(f, found)
        if legacy:  # protocol, system info, the object, its storage keys; then raw tensor data
            for _ in range(4):
                _globals_in(f, found)
    return found, "legacy" if legacy else "plain"


def allow_list(path: Path, names: set[str]) -> list[tuple[Any, str]]:
    """The ``(object, "module.Name")`` pairs the weights-only unpickler may use beyond PyTorch's own,
    or WeightsError naming the first callable that could run code."""
    allowed = []
    for qualified in sorted(names):
        root = qualified.split(".")[0]
        if root == "torch" or qualified in TORCH_DEFAULTS:
            continue  # PyTorch's allow-list decides
        if qualified in PLAIN_BUILTINS:
            allowed.append((PLAIN_BUILTINS[qualified], qualified))
        elif qualified == "copyreg._reconstructor":
            allowed.append((_reconstructor, qualified))
        elif qualified in INERT_STDLIB:
            allowed.append((placeholder(qualified), qualified))
        elif root in sys.stdlib_module_names or root in ("builtins", "__builtin__", "__main__", "<hidden>"):
            raise WeightsError(f"{path}: refused: the pickle calls {qualified}, which could run code; vsr only "
                               "loads tensors and plain containers from pickles")
        else:  # another package's class or function: inert, never imported
            allowed.append((placeholder(qualified), qualified))
    return allowed


def check_pickle(path: str | Path) -> tuple[list[tuple[Any, str]], str]:
    """Steps 1 and 2 without building anything: WeightsError if ``path`` is refused or unreadable;
    else the allow-list for it and its kind (zip | legacy)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    refuse_torchscript(path)
    try:
        names, kind = pickle_globals(path)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{path}: cannot read weights: not a pickle or torch.save file ({e})") from None
    allowed = allow_list(path, names)
    if kind == "plain":
        raise WeightsError(f"{path}: cannot read weights: a plain pickle, not a PyTorch (torch.save) file")
    return allowed, kind


def load_pickle(path: str | Path) -> Any:
    """A torch.save / pickle file, read without running any code from it (see the module docstring)."""
    path = Path(path)
    allowed, kind = check_pickle(path)
    try:
        with safe_globals(allowed):
            try:  # zip files are memory-mapped: tensors are paged in from the file, not copied
                return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad weights file
        text = " ".join(str(e).split())
        if "global" in text.lower() and ("unsupported" in text.lower() or "allowed" in text.lower()):
            raise WeightsError(f"{path}: refused: the pickle names a global vsr does not allow "
                               f"({text[:200]})") from None
        raise WeightsError(f"{path}: cannot read weights: {type(e).__name__}: {text[:300]}") from None
