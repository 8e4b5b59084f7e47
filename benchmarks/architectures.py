"""Speed per architecture on this machine, through vsr's engine and through spandrel's own call.

Each architecture at its published configuration (random weights: speed only), loaded the way
`vsr run --weights FILE` loads a checkpoint (the state dict written to a .pth, read by vsr's safe
loader, recognised by spandrel), then one frame at one size, fp32, whole frames:

- ``vsr``: ``Upscaler.upscale`` (uint8 frame in, uint8 frame out: normalise, pad, model, quantise);
- ``spandrel``: ``descriptor(x)`` on a float tensor already in [0, 1] (what chaiNNer calls), so the
  difference is vsr's per-frame overhead;
- vsr's own models (compact, bicubic) for reference.

    python benchmarks/architectures.py [--size 160x120] [--repeats 3] [--only esrgan,span]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import spandrel
import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.OmniSR import OmniSR
from spandrel.architectures.RealCUGAN import UpCunet2x
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

from vsr import Upscaler, load_model
from vsr.bench.measure import repeat_times

# The configurations of well-known released checkpoints.
ARCHS = {
    "esrgan": ("RealESRGAN_x4plus (RRDBNet 64×23)", lambda: ESRGAN(num_filters=64, num_blocks=23, scale=4)),
    "compact": ("realesr-general-x4v3 (SRVGGNetCompact 64×32)",
                lambda: Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4)),
    "span": ("SPAN ×4 (48 channels)", lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4)),
    "realcugan": ("Real-CUGAN up2x", lambda: UpCunet2x()),
    "swinir": ("SwinIR-light ×4 (60, 4×6 blocks, window 8)",
               lambda: SwinIR(upscale=4, img_size=64, window_size=8, embed_dim=60, depths=[6, 6, 6, 6],
                              num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler="pixelshuffledirect")),
    "omnisr": ("OmniSR ×4 (64 features)", lambda: OmniSR(num_feat=64, block_num=1, window_size=8, up_scale=4)),
}


def timed(fn, repeats: int) -> float:
    """Median seconds per call after a warm-up call."""
    return statistics.median(repeat_times(fn, repeats)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="160x120", help="input WxH")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=None, help="comma-separated subset of: " + ", ".join(ARCHS))
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255  # (H, W, 3) -> (1, 3, H, W)
    load = os.getloadavg()
    print(f"# {w}x{h} input, fp32, {torch.get_num_threads()} threads, torch {torch.__version__}, spandrel "
          f"{spandrel.__version__}; load average {load[0]:.2f}; median of {args.repeats}, seconds per frame")
    print(f"{'architecture':46s} {'params':>8s} {'scale':>5s} {'vsr s':>8s} {'spandrel s':>10s} {'vsr fps':>8s}")
    names = args.only.split(",") if args.only else list(ARCHS)
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name in names:
            text, build = ARCHS[name]
            path = Path(tmp) / f"{name}.pth"
            torch.save(build().state_dict(), path)
            model = load_model("auto", path)
            d = model.descriptor
            up = Upscaler(model, tile=0, batch=1)
            size = (w * d.scale, h * d.scale)
            t_vsr = timed(lambda: up.upscale([frame], size), args.repeats)
            t_sp = timed(lambda: model.found(x), args.repeats)
            params = sum(p.numel() for p in model.parameters())
            print(f"{text:46s} {params / 1e6:7.2f}M {d.scale:5d} {t_vsr:8.3f} {t_sp:10.3f} {1 / t_vsr:8.2f}")
        for name in ("compact", "bicubic"):
            model = load_model(name)
            up = Upscaler(model, tile=0, batch=1)
            t_vsr = timed(lambda: up.upscale([frame], (w * 4, h * 4)), args.repeats)
            params = sum(p.numel() for p in model.parameters())
            print(f"{'vsr ' + name:46s} {params / 1e6:7.2f}M {4:5d} {t_vsr:8.3f} {'':>10s} {1 / t_vsr:8.2f}")


if __name__ == "__main__":
    main()
