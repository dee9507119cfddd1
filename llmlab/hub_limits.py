"""Which Hub models a shared server may load: decided from the Hub's metadata, before any download.

A Hub id typed by a student could name a 72-billion-parameter model: 145 GB to download, and the
memory of everyone on the server. So before loading a Hub model the lab asks the Hub about it
(one small request: `HfApi().model_info(..., files_metadata=True)`, the JSON of
`/api/models/{id}?blobs=true`) and reads its size:

1. the parameter count the Hub computed from the safetensors headers (`safetensors.total`);
2. failing that, the total size of its `.safetensors` files, at 2 bytes per parameter (16-bit
   weights, as nearly every model is shipped; a float32 model is counted twice its size, which
   errs on the safe side).

A model whose size the Hub does not give, or that has no safetensors weights (a GGUF-only or a
`pytorch_model.bin`-only repository, which the lab cannot load), is refused too.

Two settings, read from the environment:

- `LLMLAB_ALLOW_HUB_IDS=0`: no Hub id can be typed (pickers lose "Other Hub id...", links and
  the API refuse ids that are not in the lab's list);
- `LLMLAB_MAX_HUB_PARAMS`: the largest Hub model, in parameters (default 1.5 billion).

>>> info = {"safetensors": {"parameters": {"BF16": 72_706_203_648}, "total": 72_706_203_648}}
>>> hub_size(info).parameters
72706203648
>>> check_hub_model("Qwen/Qwen2.5-72B-Instruct", info, environ={})
Traceback (most recent call last):
...
llmlab.hub_limits.HubModelRefused: Qwen/Qwen2.5-72B-Instruct has 72.7 billion parameters; this server loads Hub models up to 1.5 billion (LLMLAB_MAX_HUB_PARAMS). Choose a smaller model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_HUB_PARAMS = 1_500_000_000
BYTES_PER_PARAMETER = 2  # for a size known only from the files: 16-bit weights
_NO = ("0", "false", "no", "off")
_YES = ("1", "true", "yes", "on")


class HubModelRefused(ValueError):
    """This server does not load that Hub model; the message says why and names the setting."""


def hub_ids_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """`LLMLAB_ALLOW_HUB_IDS`: whether any Hub id may be typed (unset: yes).

    >>> hub_ids_allowed({"LLMLAB_ALLOW_HUB_IDS": "0"}), hub_ids_allowed({})
    (False, True)
    """
    text = (os.environ if environ is None else environ).get("LLMLAB_ALLOW_HUB_IDS", "")
    text = text.strip().lower()
    if not text or text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(
        f"LLMLAB_ALLOW_HUB_IDS={text!r} is not allowed: use 1 (any Hub id may be typed) or 0 "
        "(only the lab's own list)."
    )


def max_hub_params(environ: Mapping[str, str] | None = None) -> int:
    """`LLMLAB_MAX_HUB_PARAMS`: the largest Hub model in parameters (unset: 1.5 billion).

    >>> max_hub_params({"LLMLAB_MAX_HUB_PARAMS": "5e8"}), max_hub_params({})
    (500000000, 1500000000)
    """
    text = (os.environ if environ is None else environ).get("LLMLAB_MAX_HUB_PARAMS", "").strip()
    if not text:
        return DEFAULT_MAX_HUB_PARAMS
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise ValueError(
            f"LLMLAB_MAX_HUB_PARAMS={text!r} is not allowed: use a number of parameters of at "
            "least 1, such as 1.5e9 or 500000000."
        )
    return int(value)


@dataclass(frozen=True)
class HubSize:
    """What the Hub says about a model's size, before anything is downloaded."""

    parameters: int | None  # counted by the Hub, or estimated from the files; None: unknown
    estimated: bool  # True when counted from file sizes, not from the safetensors headers
    safetensors_bytes: int | None  # total size of the .safetensors files, when listed
    safetensors_files: int  # how many .safetensors files (several: a sharded model)
    other_weights: tuple[str, ...]  # weight formats the lab cannot load ("GGUF", "PyTorch .bin")


def _get(info: Any, name: str) -> Any:
    """A field of a `ModelInfo` or of the same answer as a JSON dict."""
    if isinstance(info, Mapping):
        return info.get(name)
    return getattr(info, name, None)


def hub_size(info: Any) -> HubSize:
    """The size of a model from the Hub's answer (a `huggingface_hub.ModelInfo` or its JSON).

    >>> size = hub_size({"siblings": [
    ...     {"rfilename": "model-00001-of-00002.safetensors", "size": 4_000_000_000},
    ...     {"rfilename": "model-00002-of-00002.safetensors", "size": 1_000_000_000}]})
    >>> size.parameters, size.estimated, size.safetensors_files
    (2500000000, True, 2)
    """
    counted = _get(info, "safetensors")
    total = _get(counted, "total") if counted is not None else None
    if not (isinstance(total, int) and total > 0) and counted is not None:
        per_dtype = _get(counted, "parameters")  # {"BF16": n, ...}: the total is their sum
        if isinstance(per_dtype, Mapping) and per_dtype:
            total = sum(int(n) for n in per_dtype.values())
    files = [
        (str(_get(s, "rfilename") or ""), _get(s, "size")) for s in _get(info, "siblings") or []
    ]
    shards = [(name, size) for name, size in files if name.endswith(".safetensors")]
    sizes = [size for _, size in shards if isinstance(size, int)]
    size_bytes = sum(sizes) if shards and len(sizes) == len(shards) else None
    other = []
    if any(name.endswith(".gguf") for name, _ in files) or _get(info, "gguf"):
        other.append("GGUF")
    if any(name.endswith((".bin", ".pt", ".pth")) for name, _ in files):
        other.append("PyTorch .bin")
    if isinstance(total, int) and total > 0:
        parameters, estimated = total, False
    elif size_bytes:
        parameters, estimated = size_bytes // BYTES_PER_PARAMETER, True
    else:
        parameters, estimated = None, False
    return HubSize(parameters, estimated, size_bytes, len(shards), tuple(other))


def _billions(count: int) -> str:
    """
    >>> _billions(1_500_000_000), _billions(494_032_768), _billions(72_706_203_648)
    ('1.5 billion', '0.49 billion', '72.7 billion')
    """
    value = count / 1e9
    digits = 1 if value >= 1 else 2
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") + " billion"


def check_hub_model(hub_id: str, info: Any, environ: Mapping[str, str] | None = None) -> HubSize:
    """The model's size when this server may load it; HubModelRefused (saying why) otherwise."""
    limit = max_hub_params(environ)
    size = hub_size(info)
    if size.safetensors_files == 0 and (size.other_weights or _get(info, "siblings")):
        kinds = " and ".join(size.other_weights) or "no weight files the lab knows"
        raise HubModelRefused(
            f"{hub_id} has no safetensors weights ({kinds} only), and the lab loads safetensors "
            "only. Choose another model."
        )
    if size.parameters is None:
        raise HubModelRefused(
            f"The Hub does not say how large {hub_id} is (no parameter count, no file sizes), "
            f"and this server loads only Hub models it can check first, up to "
            f"{_billions(limit)} parameters (LLMLAB_MAX_HUB_PARAMS). Choose another model."
        )
    if size.parameters > limit:
        about = "about " if size.estimated else ""
        how = (
            f" (from its {size.safetensors_bytes / 1e9:.1f} GB of safetensors files)"
            if size.estimated and size.safetensors_bytes
            else ""
        )
        raise HubModelRefused(
            f"{hub_id} has {about}{_billions(size.parameters)} parameters{how}; this server "
            f"loads Hub models up to {_billions(limit)} (LLMLAB_MAX_HUB_PARAMS). Choose a "
            "smaller model."
        )
    return size
