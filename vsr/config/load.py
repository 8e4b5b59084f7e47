"""Where a run's options come from, lowest precedence first: the packaged ``configs/default.yaml`` <
``~/.config/vsr/config.yaml`` < ``--config FILE`` (or a preset name) < ``VSR_*`` environment variables
< command-line flags. Every layer is checked by the same rules (vsr.config.checks) and the merged
result by ``RunConfig.validate()``.

YAML is read with PyYAML's safe loader, bounded: a document whose aliases would expand to more than
``MAX_YAML_NODES`` nodes (a "billion laughs" file) is refused before anything is built from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from vsr.config.checks import check_value
from vsr.config.options import OPTIONS, RunConfig
from vsr.errors import COMMAND_LINE, UsageError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIGS / "default.yaml"
PRESETS = CONFIGS / "presets"  # `--config NAME` finds NAME.yaml here
ENV_PREFIX = "VSR_"
MAX_YAML_BYTES = 1 << 20  # a config file is a few hundred bytes; a megabyte is not a config
MAX_YAML_NODES = 10_000  # nodes of the document with every alias expanded


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vsr" / "config.yaml"


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with aliases expanded, counted without expanding (memoised per node)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_YAML_NODES + 1  # a node that contains itself: refuse
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_YAML_NODES + 1)
    return memo[id(node)]


def read_yaml(text: str, where: str) -> Any:
    """``text`` as plain YAML data (safe loader), refusing documents that expand past MAX_YAML_NODES."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise UsageError(f"{where}: YAML expands to more than {MAX_YAML_NODES} nodes (aliases); "
                             "a config is a short mapping of option: value")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise UsageError(f"{where}: not valid YAML ({e})") from e
    finally:
        loader.dispose()


def read_config_file(path: Path) -> dict[str, Any]:
    """The options of one YAML file, each checked by its rule."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise UsageError(f"{path}: {path.stat().st_size} bytes is not a config file (limit {MAX_YAML_BYTES})")
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise UsageError(f"{path}: cannot read config file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from e
    data = read_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config file must be a mapping of option: value")
    unknown = sorted(str(k) for k in data if k not in OPTIONS)
    if unknown:
        raise UsageError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    return {k: check_value(k, v, str(path)) for k, v in data.items()}


def read_env(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """``VSR_<OPTION>`` variables: {option: (value, variable name)}; other VSR_* names are ignored."""
    out = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in OPTIONS:
                out[name] = (check_value(name, value, key), key)
    return out


def find_config(name: str | Path) -> Path:
    """A config file path, or the preset of that name shipped with vsr."""
    path = Path(name)
    if not path.is_file() and (PRESETS / f"{name}.yaml").is_file():
        return PRESETS / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"{path}: config file not found; presets: {', '.join(presets())}")
    return path


def load_config(
    config_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    user_file: Path | None = None,
) -> RunConfig:
    """Merge the layers and validate; ``flags`` holds only the options given on the command line."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(path: Path) -> None:
        for k, v in read_config_file(path).items():
            values[k], sources[k] = v, str(path)

    take(DEFAULT_CONFIG)
    sources.clear()  # the defaults need no source
    user = user_file if user_file is not None else user_config_path()
    if user.is_file():
        take(user)
    if config_file is not None:
        take(find_config(config_file))
    for k, (v, var) in read_env(os.environ if environ is None else environ).items():
        values[k], sources[k] = v, var
    for k, v in (flags or {}).items():
        if k in OPTIONS:
            values[k], sources[k] = check_value(k, v, COMMAND_LINE), COMMAND_LINE
    config = RunConfig(**values)
    config.sources = sources
    return config.validate()
