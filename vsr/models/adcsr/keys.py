"""The AdcSR authors' checkpoint layout, mapped to and from vsr's AdcSR state dict.

Pure functions on state dicts, no model code: :func:`from_official` turns the authors' two files
(``net_params_200.pkl``, a DataParallel state dict with the UNet also stored under alias keys, and
``halfDecoder.ckpt``'s ``state_dict``) into vsr names, checking that aliases equal their canonical
tensors; :func:`to_official` writes the authors' layout back (aliases and the decoder's unused parts
included); :func:`check_state_dict` names missing, unexpected or wrongly shaped keys in both naming
schemes. The architecture itself is in vsr.models.adcsr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from vsr.errors import WeightsError

if TYPE_CHECKING:
    from vsr.models.adcsr import AdcSRConfig

# The authors' layout. net_params_200.pkl: a DataParallel state dict of Sequential(PixelUnshuffle, unet,
# decoder mid block): "module.body.1.<diffusers UNet name>", the UNet again under aliases
# "module.body.1.body.<k>.*" (its own Sequential of blocks), "module.body.2.<mid block name>".
# halfDecoder.ckpt: a Lightning checkpoint whose state_dict holds "decoder.<diffusers Decoder name>"
# (plus encoder and loss keys). Its conv_in and mid_block are not used by the released network (test.py
# runs the distilled mid block from net_params instead).

_RENAMES = (  # (official fragment, vsr fragment): ours are shorter; applied in order, reversed on export
    (".transformer_blocks.0.", ".block."),
    (".ff.net.0.proj.", ".ff.proj_in."),
    (".ff.net.2.", ".ff.proj_out."),
    (".to_out.0.", ".to_out."),
    (".downsamplers.0.conv.", ".down."),
    (".upsamplers.0.conv.", ".up."),
)
NET_UNET, NET_MID, DEC = "module.body.1.", "module.body.2.", "decoder."
DEC_USED = ("up_blocks.", "conv_norm_out.", "conv_out.")  # decoder.* parts the network runs
DEC_UNUSED = ("conv_in.", "mid_block.")  # decoder.* parts test.py loads but never runs
SD_LATENT = 4  # input width of the unused decoder.conv_in (SD's latent channels)


def _rename(name: str, reverse: bool = False) -> str:
    name = "." + name
    for official, ours in reversed(_RENAMES) if reverse else _RENAMES:
        name = name.replace(ours, official) if reverse else name.replace(official, ours)
    return name[1:]


def _alias_targets(levels: int) -> list[str]:
    """What ``unet.body.<k>`` stands for: down blocks, mid block, up blocks, norm, act, conv_out."""
    return ([f"down_blocks.{i}" for i in range(levels)] + ["mid_block"]
            + [f"up_blocks.{i}" for i in range(levels)] + ["conv_norm_out", "conv_act", "conv_out"])


def official_name(key: str) -> str:
    """The official file and key a vsr state-dict key comes from, for messages."""
    if key.startswith("unet."):
        return "net_params " + NET_UNET + _rename(key[5:], reverse=True)
    if key.startswith("decoder.mid_block."):
        return "net_params " + NET_MID + _rename(key[18:], reverse=True)
    return "halfDecoder.ckpt state_dict " + DEC + _rename(key[8:], reverse=True)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device.type == "meta" or (a.data_ptr() == b.data_ptr() and a.stride() == b.stride()):
        return True
    return torch.equal(a, b)


def from_official(net: Mapping[str, torch.Tensor], decoder: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The two official state dicts (``decoder`` = the checkpoint's ``state_dict``) → a vsr state dict.

    Aliases must equal their canonical tensors and are dropped; keys outside the known prefixes fail
    (non-``decoder.`` keys of the Lightning checkpoint are ignored). Missing keys and shapes are checked
    against the model by :func:`check_state_dict`.
    """
    stripped = {}
    for k, v in net.items():
        while k.startswith("module."):
            k = k[len("module."):]
        stripped["module." + k] = v
    levels = 1 + max((int(k[len(NET_UNET + "down_blocks."):].split(".")[0])
                      for k in stripped if k.startswith(NET_UNET + "down_blocks.")), default=3)
    targets = _alias_targets(levels)
    out: dict[str, torch.Tensor] = {}
    aliases, unexpected = {}, []
    for k, v in stripped.items():
        if k.startswith(NET_UNET + "body."):
            aliases[k] = v
        elif k.startswith(NET_UNET):
            out["unet." + _rename(k[len(NET_UNET):])] = v
        elif k.startswith(NET_MID):
            out["decoder.mid_block." + _rename(k[len(NET_MID):])] = v
        else:
            unexpected.append(k)
    for k, v in decoder.items():
        if not k.startswith(DEC) or k[len(DEC):].startswith(DEC_UNUSED):
            continue
        if k[len(DEC):].startswith(DEC_USED):
            out["decoder." + _rename(k[len(DEC):])] = v
        else:
            unexpected.append("halfDecoder.ckpt " + k)
    mismatched = []
    for k, v in aliases.items():
        index, _, rest = k[len(NET_UNET + "body."):].partition(".")
        target = targets[int(index)] if index.isdigit() and int(index) < len(targets) else None
        canonical = None if target is None else "unet." + _rename(f"{target}.{rest}")
        if canonical is None:
            unexpected.append(k)
        elif canonical not in out:
            out[canonical] = v  # only the alias was saved: it is the tensor
        elif not _same(out[canonical], v):
            mismatched.append(f"{k} != {NET_UNET}{target}.{rest}")
    if unexpected:
        raise WeightsError(f"unexpected keys in the AdcSR weights: {', '.join(sorted(unexpected)[:20])}"
                           + (f" (+{len(unexpected) - 20} more)" if len(unexpected) > 20 else ""))
    if mismatched:
        raise WeightsError("AdcSR weights are inconsistent: alias keys differ from their canonical keys: "
                           + ", ".join(mismatched[:10]))
    return out


def to_official(sd: Mapping[str, torch.Tensor], cfg: AdcSRConfig, aliases: bool = True
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A vsr state dict → (net_params state dict, halfDecoder ``state_dict``) in the authors' layout.

    The decoder's unused parts are filled so the authors' strict loader accepts the result: its mid
    block with a copy of the distilled one (what the authors initialised it from), conv_in with zeros.
    """
    net: dict[str, torch.Tensor] = {}
    dec: dict[str, torch.Tensor] = {}
    targets = _alias_targets(len(cfg.widths))
    for k, v in sd.items():
        if k.startswith("unet."):
            name = _rename(k[5:], reverse=True)
            net[NET_UNET + name] = v
            if aliases:
                for index, target in enumerate(targets):
                    if name.startswith(target + "."):
                        net[f"{NET_UNET}body.{index}.{name[len(target) + 1:]}"] = v
        elif k.startswith("decoder.mid_block."):
            name = _rename(k[18:], reverse=True)
            net[NET_MID + name] = v
            dec[DEC + "mid_block." + name] = v.clone()
        else:
            dec[DEC + _rename(k[8:], reverse=True)] = v
    like = next(iter(sd.values()))
    w = cfg.dec_widths[0]
    dec[DEC + "conv_in.weight"] = torch.zeros(w, SD_LATENT, 3, 3, dtype=like.dtype, device=like.device)
    dec[DEC + "conv_in.bias"] = torch.zeros(w, dtype=like.dtype, device=like.device)
    return net, dec


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Missing, unexpected or wrongly shaped keys → WeightsError naming them (official names too)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    shapes = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append("missing " + ", ".join(f"{k} ({official_name(k)})" for k in missing[:10])
                        + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
    if extra:
        problems.append("unexpected " + ", ".join(f"{k} ({official_name(k)})" for k in extra[:10]))
    if shapes:
        problems.append("wrong shape " + ", ".join(
            f"{k} ({official_name(k)}): {tuple(sd[k].shape)} instead of {expected[k]}" for k in shapes[:10]))
    if problems:
        raise WeightsError("AdcSR weights do not match the architecture: " + "; ".join(problems))
