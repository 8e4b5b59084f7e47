"""Models: the registry (registry) and one file or folder per model: adcsr/, compact, classic;
foreign (others' checkpoints, through spandrel) and detect (which model a file holds).

``load_model(name, weights, device, dtype)`` returns an ``nn.Module`` carrying its ``descriptor``
(scale, input multiple, value range, tiling need, precisions); see vsr.models.registry for the
model contract.
"""

from vsr.models.registry import (
    AUTO,
    DEFAULT_MODEL,
    MODELS,
    ModelDescriptor,
    ModelSpec,
    attach,
    available_models,
    choose,
    default_model,
    describe,
    load_model,
    spec,
)

__all__ = ["AUTO", "DEFAULT_MODEL", "MODELS", "ModelDescriptor", "ModelSpec", "attach", "available_models", "choose",
           "default_model", "describe", "load_model", "spec"]
