"""What a loaded model is, as the engine and the CLI need to know it: vsr's model descriptor (spandrel's
idea), filled in by the registry for vsr's own models and from spandrel's descriptor for others."""

from __future__ import annotations

from dataclasses import dataclass

ALL_PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ModelDescriptor:
    """What a loaded model is, as the engine and the CLI need to know it (spandrel's descriptor idea)."""

    name: str  # registry name, or the detected architecture of a loaded file
    scale: int  # native upscale factor: the model always computes this (other scales are resized)
    multiple: int = 1  # input H and W must be multiples of this; the engine pads
    value_range: tuple[float, float] = (-1.0, 1.0)  # of the input and the output
    tiling: bool = False  # attention: cost grows with tile area squared, so frames are tiled by default
    precisions: tuple[str, ...] = ALL_PRECISIONS  # what the model computes correctly in
    shifts_colour: bool = True  # learned models can drift in colour, so the colour fix applies
    interpolates: bool = False  # a pure interpolator: ``model.resize(x, h, w)`` makes any size directly
    integer_resize: bool = False  # ``resize`` also takes uint8 (1, 3, H, W) on a CPU (torch's uint8 kernels)
    architecture: str = ""  # for messages and provenance: "AdcSR", "SRVGGNetCompact", "RRDBNet", ...
    denoise: bool = False  # takes denoise S (a grain/denoise pair of weight sets)
    color_fix: str = "adain"  # the colour fix of `color_fix: auto`: AdcSR's own; "none" for others' models
    tiles_well: bool = True  # False: tiles change the result (spandrel: tiling discouraged, or done inside)
    file_sha256: str = ""  # a model loaded from someone's file: its sha256, for provenance and messages

    def colour_fix(self, asked: str) -> str:
        """The colour fix that runs when ``asked`` (a ``color_fix`` value): ``auto`` is the model's own;
        none at all for a model that cannot shift colour (an interpolator)."""
        if not self.shifts_colour:
            return "none"
        return self.color_fix if asked == "auto" else asked

    @property
    def label(self) -> str:
        """How messages and provenance tags name the model: the registry name, or the architecture and
        file of a model loaded from a checkpoint."""
        if not self.file_sha256:
            return self.name
        return f"{self.architecture} from {self.name} (file sha256:{self.file_sha256[:12]})"
