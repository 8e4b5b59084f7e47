"""Real-world degradations for training and evaluating ×4 models, in the manner of Real-ESRGAN.

High-resolution RGB in, low-resolution RGB out, both ``(3, H, W)`` float tensors in [0, 1].
Two rounds of blur → random resize → noise → JPEG (the "second-order" model of Real-ESRGAN), then the
final resize to ``H/scale`` with an optional sinc (ringing) filter, then what video adds: a real
low-bitrate H.264 or MPEG-2 encode through PyAV (several frames with a small pan, so inter-frame
prediction shows up too), and optional interlace combing or VHS-like chroma smear and line jitter.

Strength tiers (``tiers`` in the config): each sample first draws a tier (clean, mild, medium, heavy)
by weight, and the tier's ``override`` is merged over the base parameters, so one config spans clean
downscales (the common case a PSNR model must not smooth) to VHS-grade damage. A run trains on a
subset of tiers with :func:`select_tiers` (the grain and denoise sets of ``--denoise``).

Every random choice is drawn from the ``numpy.random.Generator`` the caller passes: one generator
per sample gives bit-identical output for the same seed. Parameters live in
``vsr/configs/degrade.yaml`` (documented there); :func:`load_config` reads it.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import av
import numpy as np
import torch
import torch.nn.functional as F
import yaml

CONFIG_PATH = Path(__file__).parent.parent / "configs" / "degrade.yaml"
RESIZE_MODES = ("area", "bilinear", "bicubic")
CLIP_FPS = 25  # frame rate of the short clip the codec degradation encodes (sets bits per frame)
PIXEL_LEVELS = 255.0  # 8-bit quantisation between stages, as a real pipeline stores frames


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The degradation parameters: ``path`` or the packaged degrade.yaml."""
    with open(path or CONFIG_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


REPLACED_WHOLE = ("codecs", "types", "probs")  # weight tables: a tier's table replaces the base's


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        nested = isinstance(v, dict) and isinstance(base.get(k), dict) and k not in REPLACED_WHOLE
        out[k] = _merge(base[k], v) if nested else v
    return out


def tier_config(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """The full parameters of tier ``name``: its ``override`` merged over the base (``tiers`` removed)."""
    base = {k: v for k, v in cfg.items() if k != "tiers"}
    if name not in cfg.get("tiers", {}):
        raise ValueError(f"unknown degradation tier {name!r}; the config has {sorted(cfg.get('tiers', {}))}")
    return _merge(base, cfg["tiers"][name].get("override") or {})


def select_tiers(cfg: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    """The config with its tier weights replaced by ``weights`` (tiers not named get weight 0)."""
    tiers = cfg.get("tiers", {})
    unknown = set(weights) - set(tiers)
    if unknown:
        raise ValueError(f"unknown degradation tiers {sorted(unknown)}; the config has {sorted(tiers)}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one tier needs a positive weight")
    return {**cfg, "tiers": {n: {**t, "weight": float(weights.get(n, 0.0))} for n, t in tiers.items()}}


def parse_tiers(text: str) -> dict[str, float]:
    """``"clean:1,mild:1"`` or ``"clean,mild"`` (equal weights) → ``{"clean": 1.0, "mild": 1.0}``."""
    out = {}
    for part in text.split(","):
        name, _, w = part.strip().partition(":")
        out[name] = float(w) if w else 1.0
    return out


def draw_tier(cfg: dict[str, Any], rng: np.random.Generator) -> str | None:
    """One tier name by weight; None when the config has no tiers."""
    tiers = cfg.get("tiers")
    if not tiers:
        return None
    names = list(tiers)
    w = np.array([float(tiers[n]["weight"]) for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


# ----------------------------------------------------------------------------------------- kernels


def _uniform(rng: np.random.Generator, lo_hi: list[float] | tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    return np.meshgrid(r, r, indexing="xy")


def _inverse_covariance(sx: float, sy: float, theta: float) -> np.ndarray:
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sx * sx, sy * sy]) @ rot.T
    return np.linalg.inv(cov)


def gaussian_family_kernel(size: int, sx: float, sy: float, theta: float, shape: str, beta: float) -> np.ndarray:
    """Gaussian (beta ignored), generalised Gaussian exp(-½ q^β) or plateau 1/(1+q^β) kernel, where q is
    the Mahalanobis distance² under the rotated covariance; normalised to sum 1."""
    xx, yy = _grid(size)
    inv = _inverse_covariance(sx, sy, theta)
    q = inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    if shape == "gaussian":
        k = np.exp(-0.5 * q)
    elif shape == "generalized":
        k = np.exp(-0.5 * np.power(q, beta))
    elif shape == "plateau":
        k = 1.0 / (1.0 + np.power(q, beta))
    else:
        raise ValueError(f"unknown kernel shape {shape!r}")
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass (2-D sinc / Airy) kernel with cutoff ``cutoff`` rad/pixel: ringing, overshoot."""
    xx, yy = _grid(size)
    r = torch.from_numpy(np.sqrt(xx * xx + yy * yy))
    centre = torch.tensor(cutoff * cutoff / (4 * math.pi), dtype=torch.float64)
    k = torch.where(r == 0, centre, cutoff * torch.special.bessel_j1(cutoff * r) / (2 * math.pi * r.clamp_min(1e-12)))
    k = k.numpy()
    return k / k.sum()


def random_kernel(rng: np.random.Generator, cfg: dict[str, Any]) -> np.ndarray:
    """One blur kernel as configured: a sinc with ``sinc_prob``, else a Gaussian-family kernel."""
    size = int(rng.choice(np.arange(cfg["size"][0], cfg["size"][1] + 1, 2)))
    if rng.random() < cfg["sinc_prob"]:
        # Small kernels need a higher cutoff, else the sinc is a box that blurs, not rings.
        lo = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, float(rng.uniform(lo, math.pi)))
    names = list(cfg["types"])
    probs = np.array([cfg["types"][n] for n in names], dtype=np.float64)
    kind = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    shape, _, iso = kind.partition("_")  # e.g. "generalized_aniso" → ("generalized", "aniso")
    sx = _uniform(rng, cfg["sigma"])
    sy, theta = (sx, 0.0) if iso == "iso" else (_uniform(rng, cfg["sigma"]), float(rng.uniform(-math.pi, math.pi)))
    beta = _uniform(rng, cfg["beta_generalized"] if shape == "generalized" else cfg["beta_plateau"])
    return gaussian_family_kernel(size, sx, sy, theta, shape, beta)


def filter2d(img: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolve every channel of ``(C, H, W)`` with ``kernel``; reflect padding (replicate when tiny)."""
    k = torch.from_numpy(kernel).to(img.dtype)
    p = k.shape[-1] // 2
    c, h, w = img.shape
    mode = "reflect" if min(h, w) > p else "replicate"
    x = F.pad(img.unsqueeze(0), (p, p, p, p), mode=mode)
    return F.conv2d(x, k.expand(c, 1, *k.shape), groups=c)[0]


# ----------------------------------------------------------------------------- resize, noise, jpeg


def resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize to ``size`` (h, w). Modes: area, bilinear, bicubic (plain: a ×4 reduction aliases, as
    naive scalers do) and bilinear_aa, bicubic_aa (antialiased, like ffmpeg's or PIL's reductions)."""
    base, aa = mode.removesuffix("_aa"), mode.endswith("_aa")
    kw = {} if base == "area" else {"align_corners": False, "antialias": aa}
    return F.interpolate(img.unsqueeze(0), size=size, mode=base, **kw)[0].clamp(0, 1)


def random_resize(img: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    names = ["up", "down", "keep"]
    probs = np.array([cfg["probs"][n] for n in names], dtype=np.float64)
    kind = names[int(rng.choice(3, p=probs / probs.sum()))]
    factor = {"up": _uniform(rng, [1.0, cfg["range"][1]]), "down": _uniform(rng, [cfg["range"][0], 1.0]), "keep": 1.0}[kind]
    mode = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    h, w = img.shape[-2:]
    return resize(img, (max(2, round(h * factor)), max(2, round(w * factor))), mode)


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def add_noise(img: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    """Gaussian (sigma in 8-bit levels) or Poisson (shot) noise; gray noise (same on R, G, B) with
    ``gray_prob``, colour noise otherwise."""
    gen = _torch_generator(rng)
    gray = rng.random() < cfg["gray_prob"]
    c = 1 if gray else img.shape[0]
    if rng.random() < cfg["gaussian_prob"]:
        sigma = _uniform(rng, cfg["gaussian_sigma"]) / PIXEL_LEVELS
        noise = torch.randn((c, *img.shape[1:]), generator=gen) * sigma
    else:
        scale = _uniform(rng, cfg["poisson_scale"])
        base = img.mean(0, keepdim=True) if gray else img
        noise = (torch.poisson(base * PIXEL_LEVELS, generator=gen) / PIXEL_LEVELS - base) * scale
    return (img + noise.expand_as(img)).clamp(0, 1)


def quantize(img: torch.Tensor) -> torch.Tensor:
    return (img * PIXEL_LEVELS).round() / PIXEL_LEVELS


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) [0, 1] → (H, W, 3) uint8."""
    return (img.clamp(0, 1) * PIXEL_LEVELS).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def from_uint8(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float() / PIXEL_LEVELS


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """A real baseline-JPEG round trip (4:2:0) through PIL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return from_uint8(np.asarray(Image.open(buf).convert("RGB")))


# --------------------------------------------------------------------------------- video artefacts


def interlace(img: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    """Weave two fields captured ``shift`` pixels apart (horizontal motion between fields): combing."""
    shift = int(rng.integers(1, cfg["max_field_shift_px"] + 1)) * (1 if rng.random() < 0.5 else -1)
    other = torch.roll(img, shifts=shift, dims=-1)
    out = img.clone()
    field = int(rng.integers(2))  # which field (top or bottom lines) comes from the later instant
    out[:, field::2] = other[:, field::2]
    return out


def vhs(img: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    """VHS-like: luma soft horizontally, chroma smeared much wider and shifted right, per-line jitter."""
    m = torch.tensor([[0.299, 0.587, 0.114], [-0.169, -0.331, 0.5], [0.5, -0.419, -0.081]], dtype=img.dtype)
    yuv = torch.einsum("ij,jhw->ihw", m, img)
    h, w = img.shape[-2:]

    def hblur(x: torch.Tensor, width: float) -> torch.Tensor:
        n = max(3, int(2 * math.ceil(2 * width) + 1))
        k = np.exp(-0.5 * ((np.arange(n) - n // 2) / max(width, 1e-3)) ** 2)
        k2 = np.zeros((n, n))
        k2[n // 2] = k / k.sum()
        return filter2d(x, k2)

    yuv[:1] = hblur(yuv[:1], _uniform(rng, cfg["luma_blur_px"]))
    chroma = hblur(yuv[1:], _uniform(rng, cfg["chroma_blur_px"]))
    yuv[1:] = torch.roll(chroma, shifts=int(rng.integers(0, cfg["chroma_shift_px"] + 1)), dims=-1)
    jitter = rng.normal(0.0, cfg["line_jitter_px"], size=h)
    xs = torch.arange(w, dtype=img.dtype)
    grid_x = ((xs[None, :] + torch.from_numpy(jitter).to(img.dtype)[:, None]) + 0.5) / w * 2 - 1
    grid_y = ((torch.arange(h, dtype=img.dtype)[:, None].expand(h, w)) + 0.5) / h * 2 - 1
    grid = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)
    yuv = F.grid_sample(yuv.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    return torch.einsum("ij,jhw->ihw", torch.linalg.inv(m), yuv).clamp(0, 1)


def roundtrip(enc: av.CodecContext, codec: str, frames: Iterable[np.ndarray]) -> list[av.VideoFrame]:
    """Encode RGB (H, W, 3) uint8 ``frames`` (even sizes) as yuv420p with ``enc`` (pts 0, 1, ...), flush,
    and decode the packets with one decoder thread: the frames a player would show, in display order."""
    packets: list[av.Packet] = []
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264" if codec == "h264" else "mpeg2video", "r")
    dec.thread_count = 1
    return [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))


def codec_roundtrip(img: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    """Encode a short clip of ``img`` panning by a pixel or two per frame with a real low-bitrate
    H.264 (libx264, CRF) or MPEG-2 (constant quantiser) encoder, decode it, and return the last frame
    moved back into place: blocking, ringing, chroma loss and motion-compensation errors."""
    names = list(cfg["codecs"])
    probs = np.array([cfg["codecs"][n] for n in names], dtype=np.float64)
    codec = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    n_frames = int(cfg["frames"])
    step = [int(v) for v in rng.integers(-cfg["max_pan_px"], cfg["max_pan_px"] + 1, size=2)]
    h, w = img.shape[-2:]
    pad = cfg["max_pan_px"] * n_frames
    # yuv420p needs even sizes; pad by reflection so the pan never reveals an edge.
    big = F.pad(img.unsqueeze(0), (pad, pad + w % 2, pad, pad + h % 2), mode="replicate")[0]
    enc = av.CodecContext.create("libx264" if codec == "h264" else "mpeg2video", "w")
    enc.width, enc.height, enc.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
    enc.gop_size = n_frames + 1  # one I-frame, the rest predicted
    enc.thread_count = 1  # deterministic output and no oversubscription in data loaders
    if codec == "h264":
        crf = int(rng.integers(cfg["h264_crf"][0], cfg["h264_crf"][1] + 1))
        enc.options = {"crf": str(crf), "preset": cfg["h264_preset"], "threads": "1"}
    else:
        q = int(rng.integers(cfg["mpeg2_qscale"][0], cfg["mpeg2_qscale"][1] + 1))
        enc.qmin = enc.qmax = q
        enc.max_b_frames = 0
    enc.time_base = Fraction(1, CLIP_FPS)
    crops = (big[:, pad + step[0] * i : pad + step[0] * i + h + h % 2, pad + step[1] * i : pad + step[1] * i + w + w % 2]
             for i in range(n_frames))
    frames = roundtrip(enc, codec, (to_uint8(c) for c in crops))
    last = from_uint8(frames[-1].to_ndarray(format="rgb24"))
    # Undo the pan: the last frame shows the image shifted by step*(n-1); pad and crop it back.
    dy, dx = step[0] * (n_frames - 1), step[1] * (n_frames - 1)
    last = F.pad(last.unsqueeze(0), (pad, pad, pad, pad), mode="replicate")[0]
    return last[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]


# ------------------------------------------------------------------------------------ the pipeline


def _stage(img: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    if rng.random() < cfg["blur_prob"]:
        img = filter2d(img, random_kernel(rng, cfg["kernel"])).clamp(0, 1)
    img = random_resize(img, rng, cfg["resize"])
    if rng.random() < cfg["noise_prob"]:
        img = add_noise(img, rng, cfg["noise"])
    return img


def degrade(hr: torch.Tensor, rng: np.random.Generator, cfg: dict[str, Any] | None = None) -> torch.Tensor:
    """HR ``(3, H, W)`` in [0, 1] (H, W multiples of the scale) → LR ``(3, H/scale, W/scale)`` in [0, 1]."""
    cfg = cfg or load_config()
    tier = draw_tier(cfg, rng)
    if tier is not None:
        cfg = tier_config(cfg, tier)
    scale = int(cfg["scale"])
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of the scale {scale}")
    out_size = (h // scale, w // scale)
    img = hr.float()
    first, second = cfg["first"], cfg["second"]
    img = _stage(img, rng, first)
    if rng.random() < first["jpeg_prob"]:
        img = jpeg(img, int(rng.integers(first["jpeg_quality"][0], first["jpeg_quality"][1] + 1)))
    if rng.random() < cfg["second_order_prob"]:
        img = _stage(img, rng, second)
    # Final: resize to the LR size (+ optional sinc) and JPEG, in either order (Real-ESRGAN's choice).
    modes = cfg.get("final_resize_modes", RESIZE_MODES)
    mode = modes[int(rng.integers(len(modes)))]
    sinc = None
    if rng.random() < cfg["final_sinc_prob"]:
        size = int(rng.choice(np.arange(cfg["first"]["kernel"]["size"][0], cfg["first"]["kernel"]["size"][1] + 1, 2)))
        sinc = sinc_kernel(size, float(rng.uniform(math.pi / 3, math.pi)))
    quality = int(rng.integers(second["jpeg_quality"][0], second["jpeg_quality"][1] + 1))
    do_jpeg = rng.random() < second["jpeg_prob"]

    def resize_sinc(x: torch.Tensor) -> torch.Tensor:
        x = resize(x, out_size, mode)
        return filter2d(x, sinc).clamp(0, 1) if sinc is not None else x

    if rng.random() < 0.5:
        img = resize_sinc(img)
        img = jpeg(img, quality) if do_jpeg else img
    else:
        img = jpeg(img, quality) if do_jpeg else img
        img = resize_sinc(img)
    lr_noise = cfg.get("lr_noise")
    if lr_noise and rng.random() < lr_noise["prob"]:  # sensor / film grain in the LR video itself
        img = add_noise(img, rng, lr_noise)
    video = cfg["video"]
    if rng.random() < video["interlace_prob"]:
        img = interlace(img, rng, video["interlace"])
    if rng.random() < video["vhs_prob"]:
        img = vhs(img, rng, video["vhs"])
    if rng.random() < video["codec_prob"]:
        img = codec_roundtrip(img, rng, video["codec"])
    return quantize(img.clamp(0, 1))


def degrade_uint8(hr: np.ndarray, seed: int, cfg: dict[str, Any] | None = None) -> np.ndarray:
    """Convenience for evaluation: (H, W, 3) uint8 HR → uint8 LR, reproducible from ``seed``."""
    return to_uint8(degrade(from_uint8(hr), np.random.default_rng(seed), cfg))
