"""The rule of every option: its type, its range or choices, and the checks that span options.

One rule per flat option name (:data:`RULES`). :func:`check_value` turns a value as it arrives —
from YAML (any YAML type), a ``VSR_*`` string, a flag, or Python — into the option's type, or raises
OptionError naming the option, the value and where it came from; nothing else escapes, whatever the
value (tested with hypothesis). Non-scalar values are refused before they are printed or converted,
so a YAML alias bomb under a string option costs nothing. :func:`check_combinations` holds the rules
between options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from vsr.errors import COMMAND_LINE, OptionError

# Choices of the options whose implementations live in higher layers (they check they match these).
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
COLOR_FIXES = ("adain", "wavelet", "none")
COLOR_FIX_CHOICES = ("auto", *COLOR_FIXES)  # auto: the model's own (its descriptor's color_fix)
DEINTERLACE_MODES = ("auto", "on", "off", "double")
DECODERS = ("pyav", "decord")
ENCODERS = ("pyav", "ffmpeg")
EXECUTORS = ("auto", "local", "ray")
PROGRESS_MODES = ("bar", "json", "none")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_TEXT = 4096  # characters of a text option (paths, codec names): more is a damaged config
MAX_LIST = 256  # items of a list option


@dataclass(frozen=True)
class Rule:
    kind: str  # bool | int | float | str | choice | list
    low: float | None = None  # smallest allowed number
    high: float | None = None  # largest allowed number
    above: bool = False  # low itself is not allowed (strictly above)
    choices: tuple[str, ...] = ()
    nullable: bool = True  # None is allowed (the default decides)


def _int(low: float, high: float, nullable: bool = True) -> Rule:
    return Rule("int", low, high, nullable=nullable)


def _float(low: float, high: float, above: bool = False) -> Rule:
    return Rule("float", low, high, above)


BOOL = Rule("bool", nullable=False)
TEXT = Rule("str")
RULES: dict[str, Rule] = {
    # model
    "model": TEXT, "weights": TEXT,
    "scale": _int(1, 8), "height": _int(2, 16384), "denoise": _float(0.0, 1.0),
    "device": TEXT, "precision": Rule("choice", choices=PRECISIONS, nullable=False),
    "tile": _int(0, 4096), "tile_overlap": _int(0, 1024), "batch": _int(1, 1024),
    "color_fix": Rule("choice", choices=COLOR_FIX_CHOICES, nullable=False), "compile": BOOL, "cuda_graphs": BOOL,
    "threads": _int(1, 1024), "max_pixels": _int(1, 2**31, nullable=False),
    # encode
    "codec": TEXT, "crf": _int(0, 51, nullable=False), "preset": Rule("str", nullable=False), "pix_fmt": TEXT,
    "encoder_opt": Rule("list"), "encoder": Rule("choice", choices=ENCODERS, nullable=False),
    "audio": BOOL, "subtitles": BOOL,
    # timing
    "start": _float(0.0, 1e7), "duration": _float(0.0, 1e7, above=True), "fps": _float(0.0, 1000.0, above=True),
    "deinterlace": Rule("choice", choices=DEINTERLACE_MODES, nullable=False),
    "decoder": Rule("choice", choices=DECODERS, nullable=False), "video_stream": _int(0, 10000),
    # execution
    "executor": Rule("choice", choices=EXECUTORS, nullable=False), "workers": _int(1, 100000), "gpus_per_worker": _float(0.0, 64.0),
    "ray_address": TEXT, "inflight_per_worker": _int(1, 64, nullable=False),
    "max_retries": _int(0, 100, nullable=False), "queue_size": _int(1, 1024, nullable=False),
    "segment_seconds": _float(0.0, 1e7, above=True), "resume": BOOL, "work_dir": TEXT,
    # output
    "progress": Rule("choice", choices=PROGRESS_MODES, nullable=False), "quiet": BOOL, "overwrite": BOOL,
    "skip_existing": BOOL,
}


def _number(value: Any, rule: Rule, fail: Callable[[str], OptionError]) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise fail(f"must be a number, not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if rule.kind == "int" and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise fail("is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise fail("must be a finite number")
    if rule.kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise fail("must be a whole number")
        value = int(value)
    else:
        value = float(value)
    low, high = rule.low, rule.high
    if low is not None and (value < low or (rule.above and value == low)) or high is not None and value > high:
        lo = f"above {low:g}" if rule.above else f"from {low:g}"
        raise fail(f"must be {lo} to {high:g}")
    return value


def _text(value: Any, fail: Callable[[str], OptionError]) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise fail(f"must be text, not {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_TEXT or "\0" in text:
        raise fail(f"must be text of at most {MAX_TEXT} characters, without NUL")
    return text


def check_value(name: str, value: Any, source: str | None = None) -> Any:
    """``value`` in the type of option ``name``, or OptionError naming it (and ``source``)."""
    rule = RULES[name]

    def fail(why: str) -> OptionError:
        return OptionError(name, value, why, source)

    if value is None:
        if rule.nullable:
            return None
        raise fail("needs a value")
    if rule.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return str(value).strip().lower() in TRUE_WORDS
        raise fail("must be true or false")
    if rule.kind in ("int", "float"):
        return _number(value, rule, fail)
    if rule.kind == "list":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or len(items) > MAX_LIST:
            raise fail(f"must be a list of at most {MAX_LIST} KEY=VALUE items")
        out = [_text(v, fail).strip() for v in items]
        return [v for v in out if v]
    text = _text(value, fail)
    if rule.kind == "choice":
        text = text.strip().lower()
        if text not in rule.choices:
            raise fail(f"must be one of {', '.join(rule.choices)}")
    return text


def check_combinations(get: Callable[[str], Any], sources: dict[str, str]) -> None:
    """Rules that span options; OptionError naming the option that has to change."""

    def fail(name: str, why: str) -> OptionError:
        return OptionError(name, get(name), why, sources.get(name))

    for item in get("encoder_opt") or []:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise fail("encoder_opt", f"item {item!r} is not KEY=VALUE")
    tile, overlap = get("tile"), get("tile_overlap")
    if tile and overlap is not None and 2 * overlap > tile:
        raise fail("tile_overlap", f"must be at most half the tile ({tile})")
    if get("scale") is not None and get("height") is not None:
        raise fail("scale", "scale and height both set the output size; give one of them")
    if (get("resume") or get("work_dir")) and not get("segment_seconds"):
        which = "resume" if get("resume") else "work_dir"
        raise fail(which, "belongs to split runs; set segment_seconds too")
    if get("segment_seconds") and (get("start") is not None or get("duration") is not None):
        raise fail("segment_seconds", "splits whole videos; it cannot be combined with start/duration")
    if get("segment_seconds") and get("encoder") != "pyav":
        raise fail("segment_seconds", "joins segments made by PyAV's encoders; use encoder=pyav")


__all__ = ["COMMAND_LINE", "RULES", "check_combinations", "check_value"]
