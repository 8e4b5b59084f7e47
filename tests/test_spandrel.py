"""Others' checkpoints through spandrel: random-weight models of spandrel's own classes at tiny sizes,
saved as .pth and .safetensors (nothing downloaded), run by `vsr run --weights FILE` and compared
with spandrel's own loader applied to the same decoded frames; detection, inspect, refusals, scales,
tiling, Ray and split runs; and ONNX export checked with onnxruntime on a real frame."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import spandrel
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.OmniSR import OmniSR
from spandrel.architectures.RealCUGAN import UpCunet2x
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

from media import decodable_times, make_video, packets
from test_weights import random_tiny, save_official, write_hostile
from vsr.cli import main
from vsr.media.decode import read_rgb
from vsr.models import load_model
from vsr.models.export import check_onnx

REPO = Path(__file__).resolve().parents[1]
REAL_FRAME = REPO / "tests" / "data" / "bbb_holdout.png"  # Big Buck Bunny, CC-BY 3.0 (DATA.md)
RGB_LOSSLESS = ["--codec", "ffv1", "--pix-fmt", "bgr0", "--color-fix", "none", "--progress", "none"]  # + --tile

# name: (builder, spandrel's architecture name, native scale, how the .pth wraps the state dict)
ARCHS = {
    "esrgan": (lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4), "ESRGAN", 4, "params_ema"),
    "realesrgan-compact": (lambda: Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4),
                           "RealESRGAN Compact", 4, "params"),
    "swinir": (lambda: SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                              upsampler="pixelshuffledirect"), "SwinIR", 2, "params"),
    "span": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2), "SPAN", 2, None),
    "realcugan": (lambda: UpCunet2x(), "RealCUGAN", 2, None),
    "omnisr": (lambda: OmniSR(num_feat=16, block_num=1, window_size=4, up_scale=3), "OmniSR", 3, None),
    "esrgan-1x": (lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=1), "ESRGAN", 1, None),
}


def save_checkpoint(name: str, folder: Path, fmt: str) -> Path:
    build, _, _, wrap = ARCHS[name]
    torch.manual_seed(sum(map(ord, name)))
    model = build()
    calibrate(model.eval())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = folder / f"{name}.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:  # as community releases are: wrapped, with training arguments and numpy scalars beside
        torch.save({wrap: state, "args": argparse.Namespace(lr=2e-4), "iter": np.int64(4000)} if wrap else state, path)
    return path


@torch.no_grad()
def calibrate(model: torch.nn.Module) -> None:
    """Rescale the last convolution of a randomly initialised model so its output spreads over
    [0, 1] (mean about 0.5, std about 0.15 from that layer) instead of collapsing to black or
    saturating: what follows the last convolution is linear in it (pixel shuffle, a base image)."""
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6), size=(48, 48), mode="bicubic").clamp(0, 1)
    out = model(x)
    saved = conv.weight.clone(), conv.bias.clone()
    conv.weight.zero_(), conv.bias.zero_()
    base = model(x)
    conv.weight.copy_(saved[0]), conv.bias.copy_(saved[1])
    contribution = out - base
    k = 0.15 / max(float(contribution.std()), 1e-6)
    conv.weight.mul_(k), conv.bias.mul_(k)
    conv.bias.add_(0.5 - float((k * contribution + base).mean()))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {(n, f): save_checkpoint(n, folder, f) for n in ARCHS for f in ("pth", "safetensors")}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_video(path, n=6, size=(64, 48), rate=25, audio_start=0.0)
    return path


def reference(path: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """spandrel's own loader and call (fp32) on the decoded frames, rounded to uint8."""
    found = spandrel.ModelLoader().load_from_file(str(path))
    found.model.eval()
    out = []
    with torch.no_grad():
        for f in frames:
            x = torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255  # (H, W, 3) -> (1, 3, H, W)
            y = found(x)[0].permute(1, 2, 0).numpy()  # (3, sH, sW) -> (sH, sW, 3)
            out.append(np.clip(np.rint(y * 255), 0, 255).astype(np.uint8))
    return out


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_detected_and_inspected_in_both_formats(name: str, checkpoints, capsys) -> None:
    _, arch, scale, _ = ARCHS[name]
    for fmt in ("pth", "safetensors"):
        path = checkpoints[name, fmt]
        assert main(["weights", "inspect", str(path), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        want = sum(v.numel() for v in ARCHS[name][0]().state_dict().values() if v.is_floating_point())
        assert (info["model"], info["architecture"], info["scale"], info["parameters"]) == ("spandrel", arch, scale, want)
        assert info["dtype"] == "fp32" and "fp32" in info["precisions"] and len(info["files"][0]["sha256"]) == 64


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_run_equals_spandrel_on_the_decoded_frames(name: str, checkpoints, clip: Path, tmp_path: Path) -> None:
    """`vsr run clip --weights FILE` (no --model): every frame equals spandrel's model applied to the
    same decoded RGB frames within 1 level; pts and the audio packets unchanged."""
    _, arch, scale, _ = ARCHS[name]
    path = checkpoints[name, "pth" if sorted(ARCHS).index(name) % 2 else "safetensors"]
    out = tmp_path / "out.mkv"
    assert main(["run", str(clip), "--weights", str(path), "-o", str(out), *RGB_LOSSLESS, "--tile", "0"]) == 0
    got, want = read_rgb(out), reference(path, read_rgb(clip))
    assert len(got) == len(want) == 6 and got[0].shape == (48 * scale, 64 * scale, 3)
    assert np.std(want) > 20 and len(np.unique(want[0])) > 150  # a model whose output is not flat
    worst = max(int(np.abs(g.astype(int) - w).max()) for g, w in zip(got, want))
    assert worst <= 1, (name, worst)
    audio_in, audio_out = packets(clip), packets(out)
    assert [p for p, _ in audio_out] == [p for p, _ in audio_in]  # the AAC track is a copy
    # Matroska holds no negative time: the whole file moves by the MP4's AAC priming, timing kept
    shift = audio_out[0][1] - audio_in[0][1]
    assert [float(t - shift) for t in decodable_times(out)] == pytest.approx(decodable_times(clip), abs=1e-3)  # ms
    assert [float(t - shift) for _, t in audio_out] == pytest.approx([t for _, t in audio_in], abs=1e-3)
    with av.open(str(out)) as c:
        tag = c.metadata.get("vsr") or c.metadata.get("VSR") or ""
    assert arch in tag and path.name in tag and "sha256" in tag, tag


def test_tiled_run_stays_close(checkpoints, clip: Path, tmp_path: Path) -> None:
    """Tiles of 32 with 8 px overlap against the whole frame: the tiles' seams are blended, so they
    differ only where ESRGAN's receptive field crosses the overlap: within 3 levels, mean under 0.05
    (measured: max 1, mean 6e-5)."""
    path = checkpoints["esrgan", "pth"]
    whole, tiled = tmp_path / "whole.mkv", tmp_path / "tiled.mkv"
    assert main(["run", str(clip), "--weights", str(path), "-o", str(whole), *RGB_LOSSLESS, "--tile", "0"]) == 0
    assert main(["run", str(clip), "--weights", str(path), "-o", str(tiled), *RGB_LOSSLESS, "--tile", "32",
                 "--tile-overlap", "8"]) == 0
    diff = np.stack([np.abs(a.astype(int) - b) for a, b in zip(read_rgb(whole), read_rgb(tiled))])
    assert diff.mean() < 0.05 and diff.max() <= 3, (diff.mean(), diff.max())


def test_scales_below_native_resize_above_are_refused(checkpoints, clip: Path, tmp_path: Path, capsys) -> None:
    path = checkpoints["esrgan", "safetensors"]
    out = tmp_path / "x2.mkv"
    assert main(["run", str(clip), "--weights", str(path), "--scale", "2", "-o", str(out), *RGB_LOSSLESS]) == 0
    assert read_rgb(out)[0].shape == (96, 128, 3)
    capsys.readouterr()
    assert main(["run", str(clip), "--weights", str(path), "--scale", "8", "-o", str(tmp_path / "x8.mkv")]) == 2
    assert "is a ×4 model" in capsys.readouterr().err


def test_grayscale_model_is_refused_clearly(tmp_path: Path, clip: Path, capsys) -> None:
    path = tmp_path / "1x_gray.pth"
    torch.save(ESRGAN(in_nc=1, out_nc=1, num_filters=8, num_blocks=1, scale=4).state_dict(), path)
    assert main(["run", str(clip), "--weights", str(path), "-o", str(tmp_path / "o.mkv")]) == 3
    err = capsys.readouterr().err
    assert "grayscale model" in err and "3-channel models only" in err


@pytest.mark.parametrize("kind", ["os.system", "eval", "data.pkl"])
def test_hostile_checkpoint_is_refused(kind: str, tmp_path: Path, clip: Path, capsys) -> None:
    path, marker = tmp_path / "4x_Evil.pth", tmp_path / "MARKER"
    write_hostile(kind, path, marker)
    for argv in (["run", str(clip), "--weights", str(path), "-o", str(tmp_path / "o.mkv")],
                 ["run", str(clip), "--model", "spandrel", "--weights", str(path), "-o", str(tmp_path / "o.mkv")],
                 ["weights", "inspect", str(path)], ["export", str(path), "--onnx", str(tmp_path / "o.onnx")]):
        assert main(argv) == 3, argv
        assert "refused" in capsys.readouterr().err and not marker.exists(), argv


def test_missing_spandrel_names_the_extra(checkpoints, clip: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # as if not installed: importing it fails
    path = checkpoints["esrgan", "pth"]
    assert main(["run", str(clip), "--weights", str(path), "-o", str(tmp_path / "o.mkv")]) == 3
    assert "pip install 'vsr[models]'" in capsys.readouterr().err


def test_not_a_model_anyone_knows(tmp_path: Path, clip: Path, capsys) -> None:
    path = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(path))
    assert main(["run", str(clip), "--weights", str(path), "-o", str(tmp_path / "o.mkv")]) == 3
    assert "not a model vsr or spandrel" in capsys.readouterr().err


def test_auto_detects_vsr_and_adcsr_files_first(tmp_path: Path) -> None:
    from vsr.models import choose
    from vsr.models.compact import SHIPPED_WEIGHTS
    assert choose(None, "cpu", SHIPPED_WEIGHTS)[0] == "compact"
    folder = tiny_adcsr(tmp_path)
    assert choose("auto", "cpu", folder)[0] == "adcsr-tiny"
    assert choose(None, "cpu", folder / "net_params_200.pkl")[0] == "adcsr-tiny"


def test_split_and_ray_runs_read_the_same_file(checkpoints, tmp_path: Path, monkeypatch) -> None:
    """A split run on Ray actors loads the checkpoint in each actor: same frames as a local run."""
    src = tmp_path / "long.mp4"
    make_video(src, n=30, size=(64, 48), rate=25, audio_start=0.0, options={"g": "10"})
    monkeypatch.chdir(checkpoints["realesrgan-compact", "safetensors"].parent)
    path = Path("realesrgan-compact.safetensors")  # relative: the actors run elsewhere, the session resolves it
    local, farm = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    assert main(["run", str(src), "--weights", str(path), "-o", str(local), *RGB_LOSSLESS]) == 0
    assert main(["run", str(src), "--weights", str(path), "-o", str(farm), *RGB_LOSSLESS, "--executor", "ray",
                 "--workers", "2", "--segment-seconds", "0.4"]) == 0
    a, b = read_rgb(local), read_rgb(farm)
    assert len(a) == len(b) == 30 and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("model,flags", [("compact", []), ("adcsr-tiny", []), ("esrgan", []), ("span", []),
                                         ("realcugan", ["--tile", "64"])])
def test_onnx_export_matches_pytorch_on_a_real_frame(model: str, flags: list, checkpoints, tmp_path: Path,
                                                     capsys) -> None:
    """`vsr export` (fp32; dynamic shapes except Real-CUGAN, whose odd sizes do not trace), checked by
    the command on a real frame and an odd-sized one, then here on another crop: relative error ≤ 1e-4.
    SPAN takes the tracing exporter by itself (torch.export crashes on its forward)."""
    onnx = tmp_path / f"{model}.onnx"
    if model in ("compact", "adcsr-tiny"):
        weights = [] if model == "compact" else ["--weights", str(tiny_adcsr(tmp_path))]
        argv = ["export", model, *weights, "--onnx", str(onnx)]
        loaded = load_model(model, weights[1] if weights else None)
    else:
        path = checkpoints[model, "pth"]
        argv, loaded = ["export", str(path), "--onnx", str(onnx)], load_model("auto", path)
    assert main([*argv, *flags, "--check", str(REAL_FRAME)]) == 0
    out = capsys.readouterr().out
    assert out.count("relative") == (1 if flags else 2)  # a dynamic export is checked at a second size
    assert ("torchscript exporter" in out) == (model == "span")
    side = (64, 64) if flags else (96, 128)
    frame = np.asarray(Image.open(REAL_FRAME).convert("RGB"))[-side[0]:, -side[1]:]  # another crop than the CLI's
    err = check_onnx(loaded, onnx, frame)
    assert err["relative_l2"] <= 1e-4, err


def test_an_export_that_does_not_hold_at_other_sizes_is_refused(checkpoints, tmp_path: Path, capsys) -> None:
    """Real-CUGAN's traced padding is right for the traced size class only: the odd-size check catches
    it, the file is removed, and the message says to fix the size."""
    onnx = tmp_path / "cugan.onnx"
    assert main(["export", str(checkpoints["realcugan", "pth"]), "--onnx", str(onnx)]) == 1
    err = capsys.readouterr().err
    assert "77x53" in err and "--tile N" in err and "removed" in err and not onnx.exists()


def test_onnx_fixed_tile_fp16(tmp_path: Path, capsys) -> None:
    onnx = tmp_path / "c16.onnx"
    assert main(["export", "compact", "--onnx", str(onnx), "--tile", "32", "--batch", "2", "--precision", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "input 2x3x32x32" in out and "fp16" in out
    rel = float(out.split("relative ")[1].split()[0])
    assert rel < 2e-3, out  # fp16 rounding


def tiny_adcsr(folder: Path) -> Path:
    """AdcSR's two official files at the tiny preset, random weights."""
    model = random_tiny()
    return save_official(folder / "adcsr-tiny", model.state_dict(), model.config)


def test_bf16_batches_and_tiles_apply(checkpoints, clip: Path, tmp_path: Path) -> None:
    """The engine's options reach a spandrel model: bf16 with batched tiles stays near fp32."""
    path = checkpoints["realesrgan-compact", "safetensors"]
    ref, low = tmp_path / "fp32.mkv", tmp_path / "bf16.mkv"
    assert main(["run", str(clip), "--weights", str(path), "-o", str(ref), *RGB_LOSSLESS, "--tile", "0"]) == 0
    assert main(["run", str(clip), "--weights", str(path), "-o", str(low), *RGB_LOSSLESS, "--precision", "bf16",
                 "--tile", "32", "--batch", "4"]) == 0
    diff = np.stack([np.abs(a.astype(int) - b) for a, b in zip(read_rgb(ref), read_rgb(low))])
    assert 0 < diff.mean() < 2.0, diff.mean()  # bf16 differs (it ran), a little


def test_print_config_shows_what_the_file_runs_as(checkpoints, clip: Path, capsys) -> None:
    import yaml

    path = checkpoints["swinir", "safetensors"]
    assert main(["run", str(clip), "--weights", str(path), "--print-config"]) == 0
    got = yaml.safe_load(capsys.readouterr().out)
    assert (got["model"], got["scale"], got["color_fix"]) == ("spandrel", 2, "none")


@pytest.mark.slow  # torch.compile: about 10 s here
def test_compile_applies(checkpoints, clip: Path, tmp_path: Path) -> None:
    path = checkpoints["realesrgan-compact", "safetensors"]
    eager, compiled = tmp_path / "eager.mkv", tmp_path / "compiled.mkv"
    tiles = ["--tile", "32", "--batch", "2"]
    assert main(["run", str(clip), "--weights", str(path), "-o", str(eager), *RGB_LOSSLESS, *tiles]) == 0
    assert main(["run", str(clip), "--weights", str(path), "-o", str(compiled), *RGB_LOSSLESS, *tiles, "--compile"]) == 0
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(read_rgb(eager), read_rgb(compiled)))


def test_a_file_loads_again_and_spandrel_leaves_the_state_alone(checkpoints) -> None:
    """spandrel's loaders pop and add keys of the dict they get (SwinIR, OmniSR, SPAN, Real-CUGAN): vsr
    hands them a copy, so describing and loading one file, twice, all work."""
    from vsr.models import describe, foreign

    for name in ARCHS:
        path = checkpoints[name, "safetensors"]
        state, _ = foreign.read(path)
        keys = sorted(state)
        foreign.recognise(state, str(path))
        assert sorted(state) == keys, name
        describe("spandrel", path)
        a, b = load_model("auto", path), load_model("spandrel", path)
        assert a.descriptor == b.descriptor


def test_auto_colour_fix_and_the_python_api(checkpoints, clip: Path, tmp_path: Path) -> None:
    """Without --color-fix a checkpoint runs as its authors made it (auto: none); vsr.Upscaler resolves
    auto the same way (compact: AdaIN; interpolators: none)."""
    import vsr

    path = checkpoints["esrgan", "pth"]  # params_ema, an argparse Namespace and a numpy scalar: spandrel's own
    out = tmp_path / "auto.mkv"          # loader refuses this file (weights_only), vsr's reads it
    assert main(["run", str(clip), "--weights", str(path), "-o", str(out), "--codec", "ffv1", "--pix-fmt", "bgr0",
                 "--progress", "none"]) == 0
    got, want = read_rgb(out), reference(checkpoints["esrgan", "safetensors"], read_rgb(clip))
    assert max(int(np.abs(g.astype(int) - w).max()) for g, w in zip(got, want)) <= 1
    assert [vsr.Upscaler(vsr.load_model(m, w)).color_fix for m, w in
            (("compact", None), ("bicubic", None), ("auto", path))] == ["adain", "none", "none"]


@pytest.mark.parametrize("case", ["missing", "folder", "train-checkpoint", "mismatch", "rgba", "beside-adcsr"])
def test_files_that_are_not_what_they_seem(case: str, checkpoints, clip: Path, tmp_path: Path, capsys) -> None:
    out = ["-o", str(tmp_path / "o.mkv")]
    if case == "missing":
        argv, code, needle = ["--model", "spandrel", "--weights", str(tmp_path / "nope.pth"), "--print-config"], 3, \
            "no such file"
    elif case == "folder":
        argv, code, needle = ["--model", "spandrel", "--weights", str(tmp_path), *out], 3, "a folder"
    elif case == "train-checkpoint":  # what `vsr train` leaves as last.pt: compact's keys are SRVGGNet's
        from vsr.models import compact

        ckpt = tmp_path / "last.pt"
        torch.save({"step": 7, "model": compact.build().state_dict(), "opt": {}, "recipe_yaml": "x: 1\n"}, ckpt)
        argv, code, needle = ["--weights", str(ckpt), *out], 3, "a `vsr train` checkpoint (step 7)"
    elif case == "mismatch":
        argv, code, needle = ["--model", "compact", "--weights", str(checkpoints["esrgan", "pth"]), *out], 2, \
            "holds a model spandrel loads, not compact weights"
    elif case == "rgba":
        path = tmp_path / "4x_rgba.pth"
        torch.save(ESRGAN(in_nc=4, out_nc=4, num_filters=8, num_blocks=1, scale=4).state_dict(), path)
        argv, code, needle = ["--weights", str(path), *out], 3, "an RGBA model"
    else:  # someone's .ckpt in the folder that holds AdcSR's files is not taken for AdcSR's
        folder = tiny_adcsr(tmp_path)
        other = folder / "4x_other.ckpt"
        torch.save(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).state_dict(), other)
        argv, code, needle = ["--weights", str(other), "--print-config"], 0, "model: spandrel"
    assert main(["run", str(clip), *argv]) == code
    captured = capsys.readouterr()
    assert needle in (captured.err if code else captured.out), captured


def test_a_spandrel_teacher_for_distillation(checkpoints) -> None:
    """`vsr train --teacher spandrel --teacher-weights FILE`: the [0, 1] model is fed and read in [-1, 1]."""
    from vsr.errors import UsageError
    from vsr.train import losses

    teacher = load_model("spandrel", checkpoints["esrgan", "pth"])
    lr = torch.rand(2, 3, 10, 12) * 2 - 1
    y = losses.teacher_forward(teacher, lr)
    want = teacher((lr + 1) / 2) * 2 - 1
    assert y.shape == (2, 3, 40, 48) and torch.allclose(y, want.clamp(-1, 1), atol=1e-6)
    with pytest.raises(UsageError, match="is ×2; the student is ×4"):
        losses.teacher_forward(load_model("spandrel", checkpoints["span", "pth"]), lr)


def test_height_above_the_native_scale_is_refused(checkpoints, clip: Path, tmp_path: Path, capsys) -> None:
    path = checkpoints["span", "safetensors"]  # ×2: 48 px high → 96 at most
    assert main(["run", str(clip), "--weights", str(path), "--height", "192", "-o", str(tmp_path / "o.mkv")]) == 2
    assert "--height 192: clip.mp4 is 48 px high and the model is ×2: 96 at most" in capsys.readouterr().err
    assert main(["run", str(clip), "--weights", str(path), "--height", "72", "-o", str(tmp_path / "o.mkv"),
                 "--progress", "none"]) == 0
    assert read_rgb(tmp_path / "o.mkv")[0].shape == (72, 96, 3)
