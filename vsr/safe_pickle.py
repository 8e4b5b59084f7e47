"""Safe loading of pickled weights (.pkl, .ckpt, torch.save files): a restricted unpickler.

The authors' files are pickles. They are read by torch.load with a restricted pickle module
that rebuilds tensors, storages and plain containers, turns classes of other packages (such as
pytorch_lightning's, referenced by halfDecoder.ckpt) into inert placeholders that never import or run
anything, and refuses any standard-library or builtin callable outside a short allow-list (os.system,
builtins.exec, subprocess, ...), so no code from a pickle ever runs. :func:`load_pickle` is the entry
point; what the loaded objects must contain is checked by vsr.weights.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from vsr.errors import WeightsError


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a callable that could run code."""


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; only latin-1 is needed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle("_codecs.encode with unexpected arguments")
    return codecs.encode(text, "latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects), for placeholder classes only."""
    if isinstance(cls, type) and issubclass(cls, Placeholder) and base is object:
        obj = cls.__new__(cls)
        obj.args = (state,)
        return obj
    raise RefusedPickle(f"copyreg._reconstructor of {cls!r}")


_SAFE: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): _latin1,
    ("copyreg", "_reconstructor"): _reconstructor,
}
# Standard-library classes that are plain data in checkpoints: rebuilt as placeholders, not refused.
_INERT_STDLIB = {("argparse", "Namespace"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
                 ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"), ("datetime", "datetime"),
                 ("datetime", "date"), ("datetime", "timedelta"), ("uuid", "UUID")}


class Placeholder:
    """Stands in for a class the pickle names but vsr does not trust: records what it was given."""

    module = name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Placeholder":
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


_placeholders: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _placeholders:
        _placeholders[key] = type(f"Placeholder[{module}.{name}]", (Placeholder,), {"module": module, "name": name})
    return _placeholders[key]


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # protocol < 3 pickles name Python 2 modules (__builtin__, copy_reg): map them as pickle does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        root = module.split(".")[0]
        if (module, name) in _INERT_STDLIB:
            return _placeholder(module, name)
        if root in sys.stdlib_module_names or root in ("builtins", "__main__"):
            raise RefusedPickle(f"{module}.{name}")
        return _placeholder(module, name)  # other packages' classes (pytorch_lightning, numpy, ...): inert


class _SafePickleModule:
    """What torch.load calls as ``pickle_module``."""

    __name__ = "vsr_safe_pickle"
    Unpickler = SafeUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return SafeUnpickler(file, **kwargs).load()


def load_pickle(path: str | Path) -> Any:
    """A torch.save / pickle file, read without running any code from it (see module docstring)."""
    path = Path(path)
    try:
        try:  # zip files are memory-mapped: tensors are paged in from the file, not copied
            return torch.load(path, map_location="cpu", pickle_module=_SafePickleModule, weights_only=False,
                              mmap=zipfile.is_zipfile(path))
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", pickle_module=_SafePickleModule, weights_only=False)
    except RefusedPickle as e:
        raise WeightsError(f"{path}: refused: the pickle calls {e}, which could run code; vsr only loads "
                           "tensors and plain containers from pickles") from None
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad weights file
        raise WeightsError(f"{path}: cannot read weights: {type(e).__name__}: {e}") from None
