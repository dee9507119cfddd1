"""Offline models' converted copies on disk: where each one lives, and whether it is current.

`llmlab.models` converts an offline model's GGUF file once into a safetensors folder and writes
a stamp into it (the format and the sha256 of the file it came from). The registry asks here
whether a model is ready to load, without importing the loading code.

    >>> converted_dir("Qwen/Qwen2.5-0.5B-Instruct").name
    'Qwen--Qwen2.5-0.5B-Instruct'
"""

from __future__ import annotations

import json
from pathlib import Path

from llmlab import assets

# Bump when the layout of a converted folder changes: old folders are then converted again.
CONVERSION_FORMAT = 1
STAMP = "llmlab-conversion.json"


def converted_dir(name: str) -> Path:
    """The folder of a model's converted copy in the cache (a "/" of a Hub id becomes "--")."""
    return assets.cache_dir() / "models" / name.replace("/", "--")


def source_sha(pack: str, gguf_file: str) -> str:
    """The sha256 the manifest pins for the GGUF file a copy is converted from."""
    return assets.get_pack(pack).file(gguf_file).sha256


def is_current(name: str, pack: str, gguf_file: str) -> bool:
    """Whether `name` has a converted copy in this format, made from the pinned GGUF file.

    A copy made from another file (the pack was updated) or in an older layout is not current:
    the next load converts it again.
    """
    try:
        recorded = json.loads((converted_dir(name) / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("format") == CONVERSION_FORMAT and recorded.get(
        "source_sha256"
    ) == source_sha(pack, gguf_file)
