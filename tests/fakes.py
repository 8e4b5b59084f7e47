"""Small models registered for a test (monkeypatch.setitem(MODELS, name, fake_spec(...)))."""

from __future__ import annotations

from torch import nn

from vsr.models import ModelDescriptor, ModelSpec


def fake_spec(name: str, cls: type[nn.Module], *, scale: int = 4, multiple: int = 1, tiling: bool = False,
              shifts_colour: bool = True) -> ModelSpec:
    """A registry entry for ``cls`` (no weights), described as ``scale``/``multiple``."""
    descriptor = ModelDescriptor(name, scale, multiple, tiling=tiling, shifts_colour=shifts_colour)
    return ModelSpec(descriptor, cls, lambda weights, device, dtype: cls().to(device, dtype), name)


def described(model: nn.Module, name: str = "test", **kw: object) -> nn.Module:
    """``model`` carrying a descriptor from its own ``scale`` and ``multiple`` attributes."""
    model.descriptor = ModelDescriptor(name, int(model.scale), int(getattr(model, "multiple", 1)), **kw)
    return model
