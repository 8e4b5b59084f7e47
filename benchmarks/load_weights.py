"""How long loading full-width AdcSR weights takes, and the peak host memory it needs.

Writes synthetic weights of the full-width model (random values, the real shapes: 456 M parameters)
to a temporary folder, then loads them with ``vsr.models.load_model`` in a fresh process per case and
prints a table: seconds, peak RSS and its increase over the process's RSS just before loading, against
the file size. "load s" is load_model's time; "+read s" adds reading every parameter once (tensors
adopted from a memory-mapped file are paged in lazily). The files were just written, so the page cache is warm (a cold first load also pays
the disk read).

    python benchmarks/load_weights.py                 # converted fp16 safetensors → fp16 / fp32 model
    python benchmarks/load_weights.py --official      # also the authors' two pickles (writes ~2.2 GB)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = """
import json, resource, sys, time
import torch
from vsr.models import load_model
torch.set_num_threads({threads})
def status_mb(field):  # VmHWM: peak RSS of this process image (ru_maxrss would survive exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024
before = status_mb("VmRSS")
t = time.perf_counter()
model = load_model("adcsr", weights={weights!r}, device="cpu", dtype=getattr(torch, {dtype!r}))
seconds = time.perf_counter() - t
with torch.no_grad():  # read every byte once (mmap-backed tensors are paged in lazily)
    total = sum(float(p.float().sum()) for p in model.parameters())
touched = time.perf_counter() - t
params = sum(p.numel() for p in model.parameters())
print(json.dumps(dict(seconds=seconds, touched=touched, before=before, peak=status_mb("VmHWM"), params=params)))
"""


def synthetic_state(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from vsr.models import adcsr

    with torch.device("meta"):
        model = adcsr.build_adcsr()
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v.shape, generator=g) * 0.02).to(dtype) for k, v in model.state_dict().items()}


def run_case(weights: Path, dtype: str, threads: int) -> dict:
    code = CHILD.format(weights=str(weights), dtype=dtype, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", action="store_true", help="also time the authors' pickle files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from vsr.models import adcsr
    from vsr.models.adcsr import keys as adcsr_keys
    from vsr.weights import formats as WF
    from vsr.weights import store as W

    with tempfile.TemporaryDirectory(prefix="vsr-load-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        sd = synthetic_state(torch.float16)
        st = tmp / "adcsr.safetensors"
        WF.write_safetensors(sd, st, {"format": WF.FORMAT, "model": "adcsr", "dtype": "fp16",
                                     "config": json.dumps(adcsr.FULL.to_dict())})
        cases = [("fp16 safetensors", st, "float16"), ("fp16 safetensors", st, "float32")]
        if args.official:
            net, dec = adcsr_keys.to_official({k: v.float() for k, v in sd.items()}, adcsr.FULL)
            official = tmp / "official"
            official.mkdir()
            torch.save(net, official / W.ADCSR_NET)
            torch.save({"state_dict": dec, "epoch": 0}, official / W.ADCSR_DECODER)
            del net, dec
            cases += [("official pickles (fp32)", official, "float16"), ("official pickles (fp32)", official, "float32")]
        del sd
        print(f"# synthetic files written in {time.perf_counter() - t:.1f} s; {args.threads} threads; "
              f"best of {args.repeat}; torch {torch.__version__}")
        print(f"{'weights':24s} {'model':8s} {'file MB':>8s} {'load s':>7s} {'+read s':>8s} {'peak RSS MB':>12s} "
              f"{'Δ peak MB':>10s} {'Δ peak / file':>14s}")
        for label, path, dtype in cases:
            size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.iterdir())) / 2**20
            runs = [run_case(path, dtype, args.threads) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            delta = max(r["peak"] - r["before"] for r in runs)
            print(f"{label:24s} {dtype:8s} {size:8.0f} {best['seconds']:7.2f} {best['touched']:8.2f} "
                  f"{max(r['peak'] for r in runs):12.0f} {delta:10.0f} {delta / size:14.2f}")


if __name__ == "__main__":
    main()
