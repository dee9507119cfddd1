"""Time BPE training on botchan.txt (~280 KB) and the from-scratch GPT-2 encoder against tiktoken.

.venv/bin/python bench/bpe_train.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project root replaces this folder on the path: bench/tokenizers.py would hide the library.
sys.path[0] = str(ROOT)

import tiktoken  # noqa: E402
from tiktoken.load import load_tiktoken_bpe  # noqa: E402

from llmlab import assets  # noqa: E402
from llmlab.tokenization import bpe  # noqa: E402


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    text = assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")
    print(f"botchan.txt: {len(text):,} characters, {len(text.encode()):,} bytes\n")
    print(f"{'vocab size':>10} | {'merges':>6} | {'train s':>7} | {'tokens':>8} | bytes/token")
    print("-" * 56)
    for vocab_size in (500, 1000, 2000, 5000):
        (tokenizer, trace), seconds = timed(bpe.train, text, vocab_size)
        tokens = len(tokenizer.encode(text))
        ratio = len(text.encode()) / tokens
        print(f"{vocab_size:>10} | {len(trace):>6} | {seconds:>7.2f} | {tokens:>8,} | {ratio:.2f}")
    path = assets.pack_path("gpt2-tiktoken", "gpt2.tiktoken")
    scratch = bpe.BPETokenizer.from_tiktoken_file(path)
    reference = tiktoken.Encoding(
        name="gpt2",
        pat_str=bpe.GPT2_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": 50256},
    )
    ours, cold = timed(scratch.encode, text)
    _, warm = timed(scratch.encode, text)
    theirs, rust = timed(reference.encode_ordinary, text)
    print(f"\nGPT-2 ranks on botchan: {len(ours):,} tokens, equal to tiktoken: {ours == theirs}")
    print(f"{'encoder':>28} | seconds | x tiktoken")
    print("-" * 52)
    for label, seconds in (
        ("from scratch (cold cache)", cold),
        ("from scratch (warm cache)", warm),
        ("tiktoken", rust),
    ):
        print(f"{label:>28} | {seconds:7.3f} | {seconds / rust:9.1f}")


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
