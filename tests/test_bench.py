"""`vsr bench` and benchmarks/flicker.py: shapes and sanity of what they report (never timings)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from media import make_video
from vsr.bench import run as bench
from vsr import cli
from fakes import described
from vsr.models import load_model
from vsr.media.decode import read_rgb

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"model", "device", "precision", "tile", "batch", "ms_per_tile", "filler_tiles", "note", "stages_s_per_frame",
        "tflops", "peak_fraction", "model_fps",
        "pipeline_fps", "pipeline_efficiency", "speedup_vs_official", "peak_device_mem_mb", "peak_host_mem_mb"}
POSITIVE = ("ms_per_tile", "model_fps", "pipeline_fps", "pipeline_efficiency", "speedup_vs_official",
            "peak_device_mem_mb", "peak_host_mem_mb")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "clip.mp4"
    make_video(path, n=4, size=(48, 32), audio_start=None)
    return path


def _json(capsys, *argv: str) -> list[dict]:
    assert cli.main(["bench", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_keys_and_values(clip: Path, capsys) -> None:
    rows = _json(capsys, "--model", "lanczos", "--device", "cpu", "--tile", "32", "--batch", "4", "--input", str(clip))
    assert len(rows) == 2
    chosen, official = rows
    for row in rows:
        assert set(row) == KEYS
        for k in POSITIVE:
            assert row[k] > 0 and math.isfinite(row[k]), k
        assert row["tflops"] > 0 and 0 < row["peak_fraction"]  # lanczos is a convolution: FLOPs counted
        assert row["pipeline_efficiency"] == pytest.approx(row["pipeline_fps"] / row["model_fps"])
        assert row["model"] == "lanczos" and row["device"] == "cpu" and row["tile"] == 32
    assert (chosen["precision"], chosen["batch"]) == ("fp32", 4)
    assert (official["precision"], official["batch"]) == ("fp32", 1)
    assert official["speedup_vs_official"] == 1.0
    assert chosen["speedup_vs_official"] == pytest.approx(official["ms_per_tile"] / chosen["ms_per_tile"])


def test_interpolation_only_model_counts_no_flops(clip: Path, capsys) -> None:
    rows = _json(capsys, "--model", "bicubic", "--device", "cpu", "--input", str(clip), "--no-official")
    assert len(rows) == 1 and set(rows[0]) == KEYS
    assert rows[0]["tflops"] == 0 and rows[0]["speedup_vs_official"] is None
    assert rows[0]["ms_per_tile"] > 0 and rows[0]["pipeline_fps"] > 0


def test_table_names_the_stages_and_the_bottleneck(capsys) -> None:
    # compact on a generated clip, tiled (4 tiles a frame: the blend stage runs)
    assert cli.main(["bench", "--model", "compact", "--device", "cpu", "--size", "56x56", "--frames", "3",
                     "--tile", "32"]) == 0
    out = capsys.readouterr().out
    assert "chosen" in out and "official" in out and "ms/tile" in out and "filler tiles" in out
    for stage in ("decode alone", "colour conversion", "decode (thread)", "encode (thread", "encode alone",
                  "host→device", "model", "blend", "device→host"):
        assert stage in out
    assert "bottleneck:" in out
    # an interpolator: straight to the output size, its own stage, no blend
    assert cli.main(["bench", "--model", "bicubic", "--device", "cpu", "--size", "32x32", "--frames", "3",
                     "--no-official"]) == 0
    out = capsys.readouterr().out
    assert "interpolate+quantise" in out and "blend" not in out


def test_flop_count_and_ceiling_are_positive() -> None:
    model = load_model("lanczos")
    assert bench.tile_flops(model, 16, 16, torch.device("cpu"), torch.float32) > 0
    assert bench.matmul_tflops(torch.device("cpu"), torch.float32, seconds=0.01) > 0


def test_unknown_model_is_a_usage_error(capsys) -> None:
    assert cli.main(["bench", "--model", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


# -- flicker ---------------------------------------------------------------------------------------


def _flicker_module():
    spec = importlib.util.spec_from_file_location("flicker", ROOT / "benchmarks" / "flicker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class NoisyBicubic(nn.Module):
    """Bicubic plus fresh random noise on every call: flicker by construction."""

    scale, multiple = 4, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return (y + 0.1 * torch.randn_like(y)).clamp(-1, 1)


def test_flicker_ratio(clip: Path) -> None:
    flicker = _flicker_module()
    frames = read_rgb(clip)
    same = flicker.flicker(frames, load_model("bicubic"))
    assert same["bicubic_change"] > 0
    assert same["ratio"] == pytest.approx(1.0, abs=0.02)
    torch.manual_seed(0)
    noisy = flicker.flicker(frames, described(NoisyBicubic()))
    assert noisy["ratio"] > 1.1


def test_temporal_change_units() -> None:
    flicker = _flicker_module()
    a = np.zeros((4, 4, 3), np.uint8)
    assert flicker.temporal_change([a, a + 10, a]) == pytest.approx(10.0)
    b = a.astype(np.uint16)
    assert flicker.temporal_change([b, b + 2570]) == pytest.approx(10.0)
