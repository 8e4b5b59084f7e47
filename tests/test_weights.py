"""Weights: safe unpickling, the Lightning checkpoint without pytorch_lightning, convert, verify, CLI.

Synthetic weights in the official layout are written here (``save_official``, also used by
test_adcsr.py); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from vsr.weights import safe_load as safe_pickle
from vsr.cli import weights as weights_cli
from vsr.models.adcsr import load as adcsr_load
from vsr.weights import formats as WF
from vsr.weights import store as W
from vsr.errors import UsageError, WeightsError
from vsr.models import adcsr, load_model
from vsr.models.adcsr import keys as adcsr_keys

REPO = Path(__file__).resolve().parents[1]
LIGHTNING = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")


@contextlib.contextmanager
def fake_module(names: tuple[str, ...], **attrs):
    """Throwaway modules under ``names`` (the last gets ``attrs``), so pickles name their globals."""
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update({n: types.ModuleType(n) for n in names})
    for key, value in attrs.items():
        value.__module__, value.__qualname__ = names[-1], key
        setattr(sys.modules[names[-1]], key, value)
    try:
        yield sys.modules[names[-1]]
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class ModelCheckpoint:  # pickled as pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint
    def __init__(self) -> None:
        self.monitor, self.best_model_score, self.dirpath = "val/rec_loss", torch.tensor(0.25), "logs/ckpt"


def save_lightning_ckpt(path: Path, decoder_sd: dict[str, torch.Tensor]) -> None:
    """A checkpoint shaped like halfDecoder.ckpt: Lightning fields, encoder/loss keys, PL classes."""
    state = collections.OrderedDict(decoder_sd)
    state["encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3)
    state["quant_conv.weight"] = torch.randn(8, 8, 1, 1)
    state["loss.logvar"] = torch.zeros(())
    with fake_module(LIGHTNING, ModelCheckpoint=ModelCheckpoint):
        ckpt = {
            "epoch": 7, "global_step": 4200, "pytorch-lightning_version": "1.4.2", "state_dict": state,
            "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25), "best_model_path": "x.ckpt"}},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-4}]}],
            "lr_schedulers": [], "callback_object": ModelCheckpoint(),
        }
        torch.save(ckpt, path)
    with zipfile.ZipFile(path) as z:  # the pickle really names the Lightning class
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        assert b"pytorch_lightning.callbacks.model_checkpoint" in z.read(pkl)


def save_official(folder: Path, sd: dict[str, torch.Tensor], cfg: adcsr.AdcSRConfig) -> Path:
    """vsr state dict → net_params_200.pkl (module. prefix + aliases) and a Lightning halfDecoder.ckpt."""
    folder.mkdir(parents=True, exist_ok=True)
    net, dec = adcsr_keys.to_official(sd, cfg)
    torch.save(collections.OrderedDict(net), folder / W.ADCSR_NET)
    save_lightning_ckpt(folder / W.ADCSR_DECODER, dec)
    return folder


def random_tiny() -> adcsr.AdcSR:
    torch.manual_seed(0)
    model = adcsr.build_adcsr_tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # norms and biases away from 1 / 0
    return model


@pytest.fixture(scope="module")
def tiny_official(tmp_path_factory):
    model = random_tiny()
    folder = save_official(tmp_path_factory.mktemp("official"), model.state_dict(), adcsr.TINY)
    return folder, model.state_dict()


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    weights_cli.add_arguments(parser)
    return weights_cli.main(parser.parse_args(argv))


# --- safe unpickling ---------------------------------------------------------------------------

class Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw"])
def test_malicious_pickle_refused(tmp_path, how, fmt):
    sentinel = tmp_path / "pwned"
    payload = (Evil(os.system, f"touch {sentinel}") if how == "os.system"
               else Evil(builtins.exec, f"open({str(sentinel)!r}, 'w').close()"))
    obj = {"state_dict": {"w": torch.zeros(2)}, "x": payload}
    path = tmp_path / "evil.pkl"
    if fmt == "raw":  # a plain pickle (no tensors: pickle.dumps of a tensor nests a torch.load)
        path.write_bytes(pickle.dumps({"x": payload}, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    with pytest.raises(WeightsError, match=r"refused: the pickle calls (posix|os|builtins)\.(system|exec)"):
        safe_pickle.load_pickle(path)
    assert not sentinel.exists()


class MarkerOnLoad(torch.nn.Module):
    """Scripted, its ``__setstate__`` creates ``path`` (torch.from_file with shared=True makes the file):
    what any TorchScript archive can do the moment torch.jit.load runs it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.register_buffer("w", torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, torch.Tensor]:
        return (self.path, self.training, self.w)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, torch.Tensor]) -> None:
        self.path, self.training = state[0], state[1]
        self.w = state[2] + torch.from_file(self.path, True, 2)


def write_hostile(kind: str, path: Path, marker: Path) -> None:
    """A weights file that would create ``marker`` if anything in it ran."""
    if kind == "torchscript":
        torch.jit.save(torch.jit.script(MarkerOnLoad(str(marker))), str(path))
        return
    payload = (Evil(os.system, f"touch {marker}") if kind == "os.system"
               else Evil(builtins.eval, f"open({str(marker)!r}, 'w').close()"))
    if kind == "data.pkl":  # a genuine torch.save zip whose data.pkl was swapped for a hostile pickle
        torch.save({"w": torch.zeros(2)}, path)
        with zipfile.ZipFile(path) as z:
            members = {n: z.read(n) for n in z.namelist()}
        name = next(n for n in members if n.endswith("/data.pkl"))
        members[name] = pickle.dumps({"w": payload}, protocol=2)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for n, data in members.items():
                z.writestr(n, data)
        return
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": payload}, path)


HOSTILE = ("os.system", "eval", "data.pkl", "torchscript")
PLACES = ("net_params beside a valid halfDecoder", "halfDecoder beside a valid net_params", ".pth", ".ckpt")


@pytest.fixture
def no_jit_load(monkeypatch):
    """Fails the test if anything calls torch.jit.load."""
    calls = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        AssertionError("torch.jit.load was called")))
    yield calls
    assert calls == []


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_weights_refused_everywhere(kind, tiny_official, tmp_path, capsys, no_jit_load):
    """Each hostile file, under each official name with a valid sibling and as .pth/.ckpt: `vsr run
    --weights`, `vsr weights verify` and `vsr weights convert` exit 3 saying it was refused, and
    nothing in the file ran."""
    from media import make_video

    from vsr.cli import main

    valid, _ = tiny_official
    clip = tmp_path / "clip.mp4"
    make_video(clip, n=2, size=(32, 32), audio_start=None)
    marker = tmp_path / "MARKER"
    for place in PLACES:
        folder = tmp_path / place.replace(" ", "_")
        folder.mkdir()
        if place.startswith("net_params"):
            shutil.copy(valid / W.ADCSR_DECODER, folder / W.ADCSR_DECODER)
            target = folder / W.ADCSR_NET
        elif place.startswith("halfDecoder"):
            shutil.copy(valid / W.ADCSR_NET, folder / W.ADCSR_NET)
            target = folder / W.ADCSR_DECODER
        else:
            target = folder / f"model{place}"
        write_hostile(kind, target, marker)
        for argv in (["run", str(clip), "--model", "adcsr-tiny", "--weights", str(target), "--progress", "none"],
                     ["weights", "verify", str(target), "--model", "adcsr-tiny"],
                     ["weights", "convert", str(target), str(tmp_path / "out.safetensors"), "--model", "adcsr-tiny"]):
            assert main(argv) == 3, (kind, place, argv)
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "refused" in err[0] and "not found" not in err[0], (kind, place, err)
            assert not marker.exists(), (kind, place, argv)
    assert not (tmp_path / "out.safetensors").exists()


def test_unknown_third_party_callable_is_inert(tmp_path):
    sentinel = tmp_path / "ran"

    def boom(path):
        Path(path).touch()

    with fake_module(("somepkg", "somepkg.evil"), boom=boom):
        torch.save({"x": Evil(boom, str(sentinel)), "w": torch.ones(3)}, tmp_path / "f.pt")
        loaded = safe_pickle.load_pickle(tmp_path / "f.pt")  # the real function is importable here, still not run
    assert not sentinel.exists()
    assert isinstance(loaded["x"], safe_pickle.Placeholder) and loaded["x"].args == (str(sentinel),)
    assert torch.equal(loaded["w"], torch.ones(3))


@pytest.mark.parametrize("zipped", [True, False])
def test_state_dict_formats_load(tmp_path, zipped):
    sd = collections.OrderedDict(a=torch.randn(3, 4), b=torch.arange(5), c=torch.nn.Parameter(torch.randn(2)))
    sd["view"] = sd["a"][1]  # a view sharing storage
    torch.save(sd, tmp_path / "sd.pkl", _use_new_zipfile_serialization=zipped)
    got = safe_pickle.load_pickle(tmp_path / "sd.pkl")
    assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


def test_lightning_checkpoint_loads_without_pytorch_lightning(tiny_official):
    folder, _ = tiny_official
    script = f"""
import sys
sys.modules["pytorch_lightning"] = None  # any import of it fails, wherever this runs
try:
    import pytorch_lightning
    raise SystemExit("pytorch_lightning is importable")
except ImportError:
    pass
from vsr.weights import safe_load as safe_pickle
from vsr.weights import formats as weights
ckpt = safe_pickle.load_pickle({str(folder / W.ADCSR_DECODER)!r})
key = next(iter(ckpt["callbacks"]))
assert isinstance(ckpt["callback_object"], safe_pickle.Placeholder), ckpt["callback_object"]
net, dec = weights.load_official({str(folder / W.ADCSR_NET)!r}, {str(folder / W.ADCSR_DECODER)!r})
assert sys.modules["pytorch_lightning"] is None
print(key.module + "." + key.name, ckpt["global_step"], len(dec), len(net))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    name, step, n_dec, n_net = out.stdout.split()
    assert name == "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" and step == "4200"
    net, dec = adcsr_keys.to_official(random_tiny().state_dict(), adcsr.TINY)
    assert (int(n_dec), int(n_net)) == (len(dec), len(net))


def test_non_tensor_state_dict_entries_rejected(tmp_path):
    torch.save({"module.body.1.conv_in.weight": "not a tensor"}, tmp_path / W.ADCSR_NET)
    torch.save({"state_dict": {}}, tmp_path / W.ADCSR_DECODER)
    with pytest.raises(WeightsError, match="not tensors: module.body.1.conv_in.weight"):
        WF.load_official(tmp_path / W.ADCSR_NET, tmp_path / W.ADCSR_DECODER)


# --- locating weights ----------------------------------------------------------------------------

def test_missing_weights_say_where_and_how(tmp_path):
    with pytest.raises(WeightsError) as e:
        load_model("adcsr")
    msg = str(e.value)
    assert str(W.model_dir("adcsr")) in msg and "vsr weights download adcsr" in msg
    assert e.value.exit_code == 3
    torch.save({}, tmp_path / W.ADCSR_NET)
    with pytest.raises(WeightsError, match="halfDecoder.ckpt: not found"):
        load_model("adcsr", weights=tmp_path / W.ADCSR_NET)


def test_cache_folder_and_either_file(tiny_official, tmp_path, monkeypatch):
    folder, sd = tiny_official
    for weights in (folder, folder / W.ADCSR_NET, folder / W.ADCSR_DECODER):
        got = load_model("adcsr-tiny", weights=weights).state_dict()
        assert all(torch.equal(got[k], sd[k]) for k in sd)
    monkeypatch.setenv("VSR_HOME", str(tmp_path))
    (tmp_path / "adcsr-tiny").symlink_to(folder)
    assert torch.equal(load_model("adcsr-tiny").decoder.conv_out.weight, sd["decoder.conv_out.weight"])


# --- convert, verify -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_convert_round_trip(tiny_official, tmp_path, dtype):
    folder, sd = tiny_official
    dst = tmp_path / "tiny.safetensors"
    assert cli("convert", str(folder), str(dst), "--dtype", dtype, "--model", "adcsr-tiny") == 0
    from safetensors import safe_open

    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
    assert adcsr.AdcSRConfig.from_dict(json.loads(meta["config"])) == adcsr.TINY and meta["dtype"] == dtype
    want = {torch.float32: sd, torch.float16: {k: v.half() for k, v in sd.items()}}[adcsr_load.DTYPES[dtype]]
    model = load_model("adcsr-tiny", weights=dst, dtype=adcsr_load.DTYPES[dtype])
    got = model.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    if dtype == "fp32":  # same weights, same outputs as from the official files
        ref = load_model("adcsr-tiny", weights=folder)
        with torch.no_grad():
            assert torch.equal(model(x), ref(x))
    with pytest.raises(WeightsError, match="holds adcsr-tiny weights, not adcsr"):
        load_model("adcsr", weights=dst)


def test_hash_mismatch_refused(tmp_path):
    f = tmp_path / "net.pkl"
    f.write_bytes(b"not the real file")
    good = W.sha256_file(f)
    W.verify_file(f, good.upper())
    with pytest.raises(WeightsError, match="does not match"):
        W.verify_file(f, "0" * 64)
    # the download's last step: a fetched file that does not match the hub's hash never lands
    dest = tmp_path / "cache" / "net_params_200.pkl"
    dest.parent.mkdir()
    with pytest.raises(WeightsError, match="does not match"):
        W.install_file(f, dest, "0" * 64, "hf://x/y")
    assert not dest.exists() and not f.exists() and not (dest.parent / W.MANIFEST).exists()
    f.write_bytes(b"not the real file")
    W.install_file(f, dest, good, "hf://x/y")
    assert dest.exists() and W.read_manifest(dest.parent)[dest.name]["sha256"] == good


def test_verify_command(tiny_official, tmp_path, capsys):
    folder, _ = tiny_official
    assert cli("verify", str(folder), "--model", "adcsr-tiny") == 0
    assert "keys and shapes match adcsr-tiny" in capsys.readouterr().out
    net = folder / W.ADCSR_NET
    assert cli("verify", str(net), "--model", "adcsr-tiny", "--sha256", W.sha256_file(net)) == 0
    with pytest.raises(WeightsError, match="does not match"):
        cli("verify", str(net), "--model", "adcsr-tiny", "--sha256", "ab" * 32)
    # a hash recorded at download time that no longer matches fails verification
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (W.ADCSR_NET, W.ADCSR_DECODER):
        (copy / name).write_bytes((folder / name).read_bytes())
    (copy / W.MANIFEST).write_text(json.dumps({W.ADCSR_NET: {"sha256": "cd" * 32, "origin": "hf://x"}}))
    with pytest.raises(WeightsError, match="does not match"):
        cli("verify", str(copy), "--model", "adcsr-tiny")
    with pytest.raises(WeightsError, match="do not match the architecture"):
        cli("verify", str(folder), "--model", "adcsr")


def test_list_and_licence_gate(tiny_official, capsys, monkeypatch):
    assert cli("list") == 0
    out = capsys.readouterr().out
    assert "adcsr " in out and "missing" in out and "vsr weights download adcsr" in out and "lanczos" in out
    assert "compact      shipped with vsr:" in out and "compact.safetensors" in out
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    with pytest.raises(UsageError, match="--yes"):  # no terminal, no --yes: nothing is fetched
        cli("download", "adcsr")
    assert "CreativeML Open RAIL++-M" in capsys.readouterr().out
    assert not (W.model_dir("adcsr") / "LICENCE-ACCEPTED").exists()


def test_default_model_needs_adcsr_weights_and_a_gpu():
    from vsr.models import DEFAULT_MODEL, default_model

    name, why = default_model("cpu")
    assert name == DEFAULT_MODEL and "GPU" in why
    folder = W.model_dir("adcsr")
    folder.mkdir(parents=True)
    for n in (W.ADCSR_NET, W.ADCSR_DECODER):
        (folder / n).touch()
    assert W.present("adcsr")
    assert default_model("cpu")[0] == DEFAULT_MODEL  # weights alone are not enough: CPU stays small
    name, why = default_model("cuda")
    assert name == ("adcsr" if torch.cuda.is_available() else DEFAULT_MODEL), why


def test_offline_download_says_how_to_install_by_hand(monkeypatch, capsys):
    """No network (the hub's address refuses connections): the error names the files, their repo and
    paths, the cache folder and the install command."""
    from vsr.cli import main

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert main(["weights", "download", "adcsr", "--yes"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    for needle in ("Guaishou74851/AdcSR", "weight/net_params_200.pkl", "weight/pretrained/halfDecoder.ckpt",
                   str(W.model_dir("adcsr")), "vsr weights install net_params_200.pkl halfDecoder.ckpt"):
        assert needle in err, (needle, err)


def test_install_files_copied_by_hand(tiny_official, tmp_path, capsys):
    from vsr.cli import main

    folder, sd = tiny_official
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    write_hostile("os.system", hostile / W.ADCSR_NET, tmp_path / "MARKER")
    shutil.copy(folder / W.ADCSR_DECODER, hostile / W.ADCSR_DECODER)
    assert main(["weights", "install", str(hostile / W.ADCSR_NET), str(hostile / W.ADCSR_DECODER),
                 "--model", "adcsr-tiny"]) == 3
    assert "refused" in capsys.readouterr().err and not W.model_dir("adcsr-tiny").exists()
    assert main(["weights", "install", str(folder / W.ADCSR_NET), str(folder / W.ADCSR_DECODER),
                 "--model", "adcsr-tiny"]) == 0
    manifest = W.read_manifest(W.model_dir("adcsr-tiny"))
    assert manifest[W.ADCSR_NET]["sha256"] == W.sha256_file(folder / W.ADCSR_NET)
    assert "installed from" in manifest[W.ADCSR_DECODER]["origin"]
    got = load_model("adcsr-tiny").state_dict()  # from the cache now
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert main(["weights", "verify", "adcsr-tiny"]) == 0
    assert "sha256 matches installed from" in capsys.readouterr().out
