"""Every value a user can type ends in a result or a clear exit 2 (3 for weights) naming the file or the
option, never "internal error": through YAML, VSR_* variables, flags and the library, one validate()."""

from __future__ import annotations


import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import make_video
from vsr.cli import main
from vsr.config import OPTIONS, RunConfig, load_config
from vsr.errors import OptionError, UsageError


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("opts") / "clip.mp4"
    make_video(path, n=3, size=(32, 32), audio_start=None)
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsr: error: ") and "internal error" not in lines[0], err
    return lines[0]


@pytest.mark.parametrize("yaml_text, needle", [
    ("tile: [1, 2]\n", "tile=[1, 2]: must be a number, not list"),
    ("segment_seconds: [1]\n", "segment_seconds=[1]: must be a number"),
    ("threads: 99999\n", "threads=99999: must be from 1 to 1024"),
    ("progress: bogus\n", "progress='bogus': must be one of bar, json, none"),
    ("crf: {a: 1}\n", "crf={'a': 1}: must be a number, not dict"),
    ("codec: [libx264]\n", "codec=['libx264']: must be text, not list"),
    ("overwrite: maybe\n", "overwrite='maybe': must be true or false"),
    ("denoise: 2\n", "denoise=2: must be from 0 to 1"),
])
def test_wrong_yaml_values_name_file_and_option(yaml_text: str, needle: str, clip: Path, tmp_path: Path,
                                                capsys) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    assert main(["run", str(clip), "--config", str(cfg), "--model", "bicubic"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(cfg) in line and needle in line, line


def test_non_utf8_config(clip: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("preset: m\xe9dium\n".encode("latin-1"))
    assert main(["run", str(clip), "--config", str(cfg)]) == 2
    assert "not a UTF-8 text file" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("var, value, needle", [
    ("VSR_SEGMENT_SECONDS", "nan", "must be a finite number"),
    ("VSR_DURATION", "inf", "must be a finite number"),
    ("VSR_PROGRESS", "bogus", "must be one of bar, json, none"),
    ("VSR_THREADS", "0", "must be from 1 to 1024"),
])
def test_wrong_environment_values_name_the_variable(var: str, value: str, needle: str, clip: Path, monkeypatch,
                                                    capsys) -> None:
    monkeypatch.setenv(var, value)
    assert main(["run", str(clip), "--model", "bicubic"]) == 2
    line = one_line(capsys.readouterr().err)
    assert var in line and needle in line, line


@pytest.mark.parametrize("crf", ["99", "-5"])
def test_crf_out_of_range_is_refused(crf: str, clip: Path, capsys) -> None:
    assert main(["run", str(clip), "--model", "bicubic", "--crf", crf]) == 2
    assert f"--crf {crf}: must be from 0 to 51" in one_line(capsys.readouterr().err)


def test_library_options_are_checked_the_same_way() -> None:
    with pytest.raises(OptionError, match="crf=99: must be from 0 to 51"):
        RunConfig(crf=99).validate()
    with pytest.raises(OptionError, match="scale and height both set the output size"):
        RunConfig(scale=2, height=720).validate()
    with pytest.raises(TypeError):
        RunConfig(crff=1)  # a misspelt keyword is a programming error in Python


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(OPTIONS)), value=YAML_VALUES)
def test_every_key_takes_every_yaml_type_without_crashing(key: str, value, tmp_path: Path) -> None:
    """Through the real path (a YAML file read by load_config, then validate): a config or UsageError."""
    cfg = tmp_path / "fuzz.yaml"
    cfg.write_text(yaml.safe_dump({key: value}))
    try:
        config = load_config(cfg, environ={}, user_file=tmp_path / "none.yaml")
    except UsageError as e:
        assert key in str(e) or "fuzz.yaml" in str(e)
        return
    got = config.get(key)
    if isinstance(got, float):
        assert math.isfinite(got)


def test_damaged_work_dir_records_are_redone(clip: Path, tmp_path: Path, capsys) -> None:
    """A record or plan.json that is valid JSON of the wrong shape is not a permanent failure."""
    out = tmp_path / "out.mkv"
    work = tmp_path / f".{out.name}.vsr-work"
    args = ["run", str(clip), "-o", str(out), "--model", "bicubic", "--progress", "none",
            "--segment-seconds", "0.04", "--resume"]
    for damage in ("null", "[]", '"x"'):
        work.mkdir(exist_ok=True)
        (work / "plan.json").write_text(damage)
        (work / "seg_00000.json").write_text(damage)
        assert main(args) == 0, capsys.readouterr().err
        assert out.is_file() and not work.exists()
        out.unlink()
    capsys.readouterr()


def test_probe_on_garbage_h264_says_so(tmp_path: Path, capsys) -> None:
    import av
    import numpy as np

    good = tmp_path / "good.mkv"
    make_video(good, n=6, size=(32, 32), audio_start=None)
    bad = tmp_path / "garbage.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(good)) as c, av.open(str(bad), "w") as out:
        s = c.streams.video[0]
        o = out.add_stream_from_template(s)
        for p in c.demux(s):
            if p.size:
                q = av.Packet(bytes(rng.integers(0, 256, p.size, dtype=np.uint8)))
                q.pts, q.dts, q.time_base, q.stream = p.pts, p.dts, p.time_base, o
                out.mux(q)
    assert main(["probe", str(bad)]) == 0
    assert "nothing decodes" in capsys.readouterr().out
    assert main(["run", str(bad), "--model", "bicubic"]) == 2
    assert "garbage.mkv" in one_line(capsys.readouterr().err)
