"""Run configuration: the options of a run in groups (options), their rules (checks), and the layers
they are read from (load: default.yaml < user config < --config < VSR_* < flags)."""

from vsr.config.checks import RULES, check_value
from vsr.config.load import (
           DEFAULT_CONFIG,
           PRESETS,
           load_config,
           presets,
           read_yaml,
           user_config_path,
)
from vsr.config.options import GROUPS, OPTIONS, RunConfig

__all__ = ["DEFAULT_CONFIG", "GROUPS", "OPTIONS", "PRESETS", "RULES", "RunConfig", "check_value", "load_config",
           "presets", "read_yaml", "user_config_path"]
