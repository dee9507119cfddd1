"""Hugging Face tokenizers built from llama.cpp's GGUF vocabularies, cached as `tokenizer.json`.

transformers converts a GGUF vocabulary (tokens, merges, scores) into a fast tokenizer. For some
families its generic conversion uses GPT-2's pre-split rules, while the original model splits text
differently (StarCoder puts every digit on its own, Falcon isolates punctuation and cuts digit runs
into threes, DeepSeek-Coder has its own rule list, Llama's SentencePiece always adds a leading
"▁"). `PRE_TOKENIZER_FIXES` restores each family's own rules — the same rules llama.cpp uses — and
the tests check every family against llama.cpp's reference ids (`.gguf.inp` / `.gguf.out`).

Conversion takes seconds (Qwen2: ~15 s), so the result is written once to
`<cache>/tokenizers/<name>/tokenizer.json` (via a temporary file and `os.replace`, so a crash never
leaves half a file) and later loads take a fraction of a second.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from llmlab import assets

PACK = "llama-cpp-vocabs"
RECIPE = 1  # bump when a fix below changes, so cached files are rebuilt
FAMILIES = ("gpt-2", "qwen2", "phi-3", "llama-spm", "starcoder", "falcon", "deepseek-coder")


def _split(pattern: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}

PRE_TOKENIZER_FIXES: dict[str, dict[str, Any]] = {
    # Llama / SentencePiece: prepend "▁" and turn every space into "▁", no other splitting.
    "llama-spm": {
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
    },
    # StarCoder: each digit is its own piece, then GPT-2's byte-level split.
    "starcoder": {
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {**_BYTE_LEVEL, "use_regex": True},
            ],
        }
    },
    # Falcon: punctuation runs isolated, GPT-2's split, then digit runs cut into groups of three.
    "falcon": {
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Punctuation", "behavior": "Contiguous"},
                {**_BYTE_LEVEL, "use_regex": True},
                {"type": "Digits", "individual_digits": False},
                _split("[0-9][0-9][0-9]"),
            ],
        }
    },
    # DeepSeek-Coder: llama.cpp's rule list for this family, then bytes mapped without a regex.
    "deepseek-coder": {
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                _split(r"[\r\n]"),
                _split(r"\s?\p{L}+"),
                _split(r"\s?\p{P}+"),
                _split("[一-龥ࠀ-一가-퟿]+"),
                _split(r"\p{N}"),
                {**_BYTE_LEVEL, "use_regex": False},
            ],
        }
    },
}


def gguf_path(family: str) -> Path:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not a llama.cpp vocabulary; allowed: {FAMILIES}")
    return assets.pack_path(PACK, f"ggml-vocab-{family}.gguf")


def cache_folder(family: str) -> Path:
    return assets.cache_dir() / "tokenizers" / f"gguf-{family}"


def _stamp(source: Path) -> dict[str, Any]:
    return {"source": source.name, "size": source.stat().st_size, "recipe": RECIPE}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        assets.shareable(Path(temporary))  # mkstemp makes it owner-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def convert(family: str) -> Path:
    """Convert one GGUF vocabulary to `tokenizer.json` (cached); returns the file's path."""
    source = gguf_path(family)
    folder = cache_folder(family)
    target, stamp_file = folder / "tokenizer.json", folder / "source.json"
    if target.is_file() and stamp_file.is_file():
        try:
            if json.loads(stamp_file.read_text()) == _stamp(source):
                return target
        except (OSError, ValueError):
            pass  # unreadable stamp: rebuild below
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    data = json.loads(converted.backend_tokenizer.to_str())
    data.update(PRE_TOKENIZER_FIXES.get(family, {}))
    _write_atomic(target, json.dumps(data, ensure_ascii=False))
    _write_atomic(stamp_file, json.dumps(_stamp(source)))
    return target


def read_reference(family: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's own test cases for a vocabulary: (input text, expected ids) pairs.

    The `.inp` file holds the inputs separated by a `__ggml_vocab_test__` line; the `.out` file
    holds one line of space-separated ids per input (special tokens not added).
    """
    source = gguf_path(family)
    inputs = Path(f"{source}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = Path(f"{source}.out").read_text(encoding="utf-8").split("\n")
    return [
        (text, [int(x) for x in line.split()]) for text, line in zip(inputs, outputs, strict=False)
    ]
