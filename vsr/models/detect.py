"""Which model a weights file holds, for ``--model auto`` (and ``--weights`` without ``--model``).

Detection order: vsr's own formats (a converted AdcSR file, a compact file: their safetensors
metadata says so; a `vsr train` checkpoint is refused, pointing at its export), then the AdcSR
authors' files (a folder, or ``net_params_200.pkl`` / ``halfDecoder.ckpt``), then any architecture
spandrel recognises. Nothing here
builds a model; AdcSR's files are matched against the presets' keys and shapes on the meta device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from vsr.errors import WeightsError
from vsr.models import compact
from vsr.models.adcsr.load import PRESETS, read_weights, stored_config
from vsr.weights.formats import FORMAT, PICKLE_SUFFIXES, read_metadata
from vsr.weights.safe_load import load_pickle
from vsr.weights.store import ADCSR_DECODER, ADCSR_NET

SPANDREL = "spandrel"  # the registry name of models loaded through spandrel (vsr.models.foreign)


def adcsr_preset(path: Path) -> str:
    """The AdcSR preset (adcsr, adcsr-tiny) whose keys and shapes the files at ``path`` match; else the
    first preset's error (a refused or missing file fails every preset alike)."""
    errors = []
    for name in PRESETS:
        try:
            read_weights(name, path, check=True)
            return name
        except WeightsError as e:
            errors.append(e)
    raise errors[0]


def official_file(path: Path) -> bool:
    """Whether ``path`` is one of the AdcSR authors' two files (their exact names: other checkpoints may
    share the folder)."""
    return path.name in (ADCSR_NET, ADCSR_DECODER)


def refuse_train_checkpoint(path: Path) -> None:
    """WeightsError for a `vsr train` checkpoint (model, optimiser and recipe): its compact weights hold
    no config, and spandrel would take them for Real-ESRGAN's compact model, without compact's base."""
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        return
    top = load_pickle(path)
    if isinstance(top, Mapping) and "recipe_yaml" in top and "model" in top:
        raise WeightsError(f"{path}: a `vsr train` checkpoint (step {top.get('step', '?')}), not weights to run; "
                           f"run the {compact.EXPORT_NAME} vsr train writes beside it")


def identify(path: Path) -> str:
    """The registry name of the model whose weights are at ``path`` (a file or an AdcSR folder)."""
    if not path.exists():
        raise WeightsError(f"{path}: no such file or folder")
    if path.is_dir() or official_file(path):
        return adcsr_preset(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        metadata = read_metadata(path)
        if metadata.get("format") == FORMAT:
            stored = stored_config(path, metadata)
            for name, cfg in PRESETS.items():
                if cfg == stored:
                    return name
            raise WeightsError(f"{path}: AdcSR weights of a configuration vsr has no preset for")
        if compact.CONFIG_METADATA_KEY in metadata or compact.SETS_METADATA_KEY in metadata:
            return "compact"
    elif suffix not in PICKLE_SUFFIXES:
        raise WeightsError(f"{path}: not a weights file vsr reads (.safetensors, {', '.join(PICKLE_SUFFIXES)})")
    else:
        refuse_train_checkpoint(path)
    return SPANDREL
