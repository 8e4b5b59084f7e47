"""AdcSR (CVPR 2025): the architecture (model), the authors' checkpoint layout (keys), loading (load)."""

from vsr.models.adcsr.load import PRESETS, convert, instantiate, loader, read_weights
from vsr.models.adcsr.model import (
           FULL,
           TINY,
           AdcSR,
           AdcSRConfig,
           build_adcsr,
           build_adcsr_tiny,
)

__all__ = ["FULL", "PRESETS", "TINY", "AdcSR", "AdcSRConfig", "build_adcsr", "build_adcsr_tiny", "convert",
           "instantiate", "loader", "read_weights"]
