"""Models: the registry (registry) and one file or folder per model: adcsr/, compact, classic.

``load_model(name, weights, device, dtype)`` returns an ``nn.Module`` carrying its ``descriptor``
(scale, input multiple, value range, tiling need, precisions); see vsr.models.registry for the
model contract.
"""

from vsr.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelDescriptor,
    ModelSpec,
    attach,
    available_models,
    default_model,
    load_model,
    spec,
)

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelDescriptor", "ModelSpec", "attach", "available_models", "default_model",
           "load_model", "spec"]
