"""Quality of the ×4 models on held-out photos degraded by vsr.train.degrade, and on a real low-res clip.

    python benchmarks/quality.py [--data data/compact/holdout] [--weights FILE] [--models a,b,c]

1. Held-out photos (DATA.md: never trained on), each degraded with configs/degrade.yaml from a fixed
   seed (its index), upscaled ×4, compared with the original: PSNR on RGB and SSIM on luma (BT.601),
   ``BORDER_PX`` pixels cropped at every edge.
2. A real clip: a held-out photo panned over ``CLIP_FRAMES`` frames, area-downscaled ×4, encoded with
   libx264 at CRF ``CLIP_CRF`` into an .mp4 by PyAV and decoded again; each decoded frame is upscaled
   and compared with its HR window.

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsr.train import degrade as D  # noqa: E402
from vsr.models import load_model  # noqa: E402

BORDER_PX = 4  # HR pixels ignored at each edge (the scale, as usual for ×4 SR metrics)
SSIM_WINDOW = 11  # Gaussian window side of SSIM, pixels
SSIM_SIGMA = 1.5  # its std, pixels
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # SSIM stabilisers for 8-bit data
CLIP_FRAMES = 16  # frames of the real clip
CLIP_HR = (448, 320)  # HR window (w, h) of the clip; its LR frames are 112×80
CLIP_PAN_PX = 6  # HR pixels the window moves per frame (right and down)
CLIP_CRF = 30  # libx264 CRF of the clip: visibly compressed, like a web SD upload
CLIP_FPS = 25


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the luma of two uint8 RGB images (Gaussian window, Wang et al. 2004)."""
    r = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    g = np.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
    k = torch.from_numpy(np.outer(g, g) / np.outer(g, g).sum())[None, None]
    x, y = (torch.from_numpy(luma(v))[None, None] for v in (a, b))
    blur = lambda t: F.conv2d(t, k)  # noqa: E731  ('valid' window positions only)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return float(s.mean())


def crop_border(img: np.ndarray) -> np.ndarray:
    return img[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX]


@torch.inference_mode()
def upscale(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    """Whole-frame ×4 of a uint8 RGB frame, no colour correction."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 127.5 - 1
    m, (h, w) = model.multiple, lr.shape[:2]
    x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
    y = model(x)[..., : h * model.scale, : w * model.scale]
    return ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[: h - h % 4, : w - w % 4])


def make_clip(hr: np.ndarray, path: Path) -> list[np.ndarray]:
    """Write the LR clip of ``hr`` to ``path`` (H.264 .mp4); return the HR windows, frame by frame."""
    w, h = CLIP_HR
    windows = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = w // 4, h // 4, "yuv420p"
        stream.options = {"crf": str(CLIP_CRF), "preset": "medium"}
        stream.codec_context.time_base = Fraction(1, CLIP_FPS)
        for i in range(CLIP_FRAMES):
            y0, x0 = min(i * CLIP_PAN_PX, hr.shape[0] - h), min(i * CLIP_PAN_PX, hr.shape[1] - w)
            win = hr[y0 : y0 + h, x0 : x0 + w]
            windows.append(win)
            t = torch.from_numpy(win).permute(2, 0, 1)[None].float()
            lr = F.interpolate(t, scale_factor=0.25, mode="area").round().clamp(0, 255).byte()[0].permute(1, 2, 0)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(lr.numpy()), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return windows


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/compact/holdout"), help="held-out HR images")
    ap.add_argument("--weights", type=Path, help="compact weights (default: the shipped file)")
    ap.add_argument("--models", default="bicubic,lanczos,compact")
    ap.add_argument("--degrade-config", type=Path, help="degradation parameters (default: configs/degrade.yaml)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    models = {n: load_model(n, args.weights if n == "compact" else None) for n in names}
    files = sorted(args.data.glob("*.png"))
    if not files:
        print(f"no held-out images in {args.data}: run scripts/get_training_data.sh first", file=sys.stderr)
        return 2
    cfg = D.load_config(args.degrade_config)
    rows: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    print(f"held-out photos degraded by vsr/train/degrade.py (seed = index), ×4, border {BORDER_PX} px")
    print(f"{'image':<34}" + "".join(f"{n + ' PSNR/SSIM':>24}" for n in names))
    started = time.monotonic()
    for seed, path in enumerate(files):
        hr = load_rgb(path)
        lr = D.degrade_uint8(hr, seed, cfg)
        line = f"{path.stem[:33]:<34}"
        for n, m in models.items():
            sr = upscale(m, lr)
            p, s = psnr(crop_border(sr), crop_border(hr)), ssim(crop_border(sr), crop_border(hr))
            rows[n].append((p, s))
            line += f"{p:>15.2f} / {s:.4f}"
        print(line)
    print(f"{'mean':<34}" + "".join(f"{np.mean([r[0] for r in rows[n]]):>15.2f} / {np.mean([r[1] for r in rows[n]]):.4f}" for n in names))
    base = np.mean([r[0] for r in rows[names[0]]])
    print("PSNR gain over " + names[0] + ": " + ", ".join(f"{n} {np.mean([r[0] for r in rows[n]]) - base:+.2f} dB" for n in names[1:]))

    # The real clip: the largest held-out photo, panned, downscaled, H.264-encoded, decoded.
    hr = max((load_rgb(p) for p in files), key=lambda a: a.shape[0] * a.shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        windows = make_clip(hr, clip)
        frames = decode(clip)
    assert len(frames) == len(windows), "the clip lost frames"
    print(f"\nreal clip: {len(frames)} frames {CLIP_HR[0] // 4}x{CLIP_HR[1] // 4} libx264 CRF {CLIP_CRF} → ×4")
    print(f"{'clip':<34}" + "".join(f"{n + ' PSNR/SSIM':>24}" for n in names))
    line = f"{'mean over frames':<34}"
    for n, m in models.items():
        ps, ss = zip(*[(psnr(crop_border(upscale(m, f)), crop_border(w)), ssim(crop_border(upscale(m, f)), crop_border(w)))
                       for f, w in zip(frames, windows)])
        line += f"{np.mean(ps):>15.2f} / {np.mean(ss):.4f}"
    print(line)
    print(f"\n({time.monotonic() - started:.0f} s, torch threads {args.threads})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
