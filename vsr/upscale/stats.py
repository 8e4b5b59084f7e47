"""What an Upscaler counts while it works (read by `vsr bench`, the run statistics and the tests)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UpscaleStats:
    frames: int = 0  # frames finished
    forward_calls: int = 0  # model invocations (batches), fp32 recomputations included
    nan_retries: int = 0  # tiles recomputed in fp32 after a non-finite result
    seconds_model: float = 0.0  # time inside the model (CUDA: events; elsewhere wall time)
    tiles: int = 0  # real tiles computed (filler tiles not counted; an interpolated frame is one)
    filler_tiles: int = 0  # copies added to fill the last batch of a call to the fixed shape
    batch_sizes: dict[int, int] = field(default_factory=dict)  # batch size -> forward calls
    oom_halvings: int = 0  # times out-of-memory halved the batch
    graph_captures: int = 0  # CUDA graphs captured (one per static shape)
    graph_failures: int = 0  # shapes whose capture failed: they run without a graph (compiled or eager)
    extra: dict = field(default_factory=dict)
