"""Embeddings benchmarks: MiniLM sentence vectors in batches, and a new query on a prepared corpus.

1. `encode_sentences` on 1,000 short sentences (the lab's corpus five times over, each copy
   numbered so no two are equal) with batch sizes 1, 16, 64 and 256, and the same sentences
   through sentence-transformers' encode for comparison; median of `--repeats` after one
   warm-up call. Target: under 5 s for 1,000 sentences at the page's batch size (64).
2. The Embeddings page's Semantic search tab in AppTest: the page is opened and its corpus
   embedded once, then the query is changed `--repeats` times. Each rerun is timed, and every
   call to `encode_sentences` during it is counted. Target: under 200 ms per rerun, and only
   the query embedded (1 text).

    .venv/bin/python bench/embeddings.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# The repository root instead of this folder: bench/tokenizers.py would shadow the `tokenizers`
# package that transformers imports.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET_CORPUS_SECONDS = 5.0
TARGET_RERUN_MS = 200.0
QUERIES = [
    "Is it going to be wet tomorrow?",
    "a trip abroad by plane",
    "Who won the match last night?",
    "How can I put money aside for later?",
    "My computer keeps freezing",
    "pets that purr",
    "What should I eat to stay fit?",
    "songs with a strong beat",
]


def median_seconds(action, repeats: int) -> float:
    action()  # warm-up: first-call costs (allocations, thread pools) are not the steady state
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def corpus_table(repeats: int) -> None:
    from llmlab import assets
    from llmlab import embeddings as emb

    corpus = emb.lab_corpus()
    sentences = [f"{s} ({copy})" for copy in range(5) for s in corpus.sentences]
    assert len(sentences) == 1_000 and len(set(sentences)) == 1_000
    encoder = emb.load_encoder()
    rows = []
    for batch in (1, 16, 64, 256):
        seconds = median_seconds(
            lambda b=batch: emb.encode_sentences(sentences, encoder, batch_size=b), repeats
        )
        rows.append((f"llmlab encode_sentences, batch {batch}", seconds))
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    folder = str(assets.pack_dir("minilm-l6-v2"))
    transformer = Transformer(folder, max_seq_length=256, model_kwargs={"use_safetensors": True})
    reference = SentenceTransformer(
        modules=[transformer, Pooling(384, "mean"), Normalize()], device="cpu"
    )
    seconds = median_seconds(
        lambda: reference.encode(sentences, batch_size=64, show_progress_bar=False), repeats
    )
    rows.append(("sentence-transformers encode, batch 64", seconds))
    print("1. Embedding 1,000 sentences with all-MiniLM-L6-v2 (median of", repeats, "runs)")
    header = f"{'how':<42} {'seconds':>8} {'sentences/s':>12} {'target':>8}"
    print(header)
    print("-" * len(header))
    page = "llmlab encode_sentences, batch 64"  # the batch size the page uses
    for name, seconds in rows:
        target = f"< {TARGET_CORPUS_SECONDS:.0f} s" if name == page else ""
        verdict = ("" if seconds < TARGET_CORPUS_SECONDS else " MISSED") if name == page else ""
        print(f"{name:<42} {seconds:>8.2f} {1_000 / seconds:>12,.0f} {target:>8}{verdict}")
    ours, theirs = dict(rows)[page], rows[-1][1]
    print(f"llmlab / sentence-transformers at batch 64: {ours / theirs:.2f} (same run)")
    print()


def rerun_table(repeats: int) -> None:
    from streamlit.testing.v1 import AppTest

    from llmlab import embeddings as emb

    counted: list[int] = []
    encode = emb.encode_sentences

    def counting(texts, *args, **kwargs):
        counted.append(len(texts))
        return encode(texts, *args, **kwargs)

    emb.encode_sentences = counting  # the page calls it through the package
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app_pages/embeddings.py").run()
    at.session_state["emb-tab"] = "Semantic search"
    started = time.perf_counter()
    at.run()  # the corpus is embedded here, once
    prepare = time.perf_counter() - started
    assert not at.exception and not at.error, [e.value for e in at.error]
    first = list(counted)
    rows = []
    for query in (QUERIES * (1 + repeats // len(QUERIES)))[:repeats]:
        counted.clear()
        at.text_input(key="emb-query").set_value(f"{query} ({len(rows)})")
        started = time.perf_counter()
        at.run()
        rows.append((time.perf_counter() - started, sum(counted), len(counted)))
        assert not at.exception and not at.error
    emb.encode_sentences = encode
    print("2. A new query on the prepared corpus (Embeddings page, Semantic search, AppTest)")
    print(f"   opening the tab: {prepare * 1000:,.0f} ms, texts embedded: {first}")
    header = f"{'rerun':>5} {'ms':>8} {'texts embedded':>15} {'calls':>6}"
    print(header)
    print("-" * len(header))
    for index, (seconds, texts, calls) in enumerate(rows, start=1):
        print(f"{index:>5} {seconds * 1000:>8.1f} {texts:>15} {calls:>6}")
    median = statistics.median(seconds for seconds, _, _ in rows) * 1000
    embedded = max(texts for _, texts, _ in rows)
    verdict = "ok" if median < TARGET_RERUN_MS and embedded == 1 else "MISSED"
    print(
        f"median {median:.1f} ms (target < {TARGET_RERUN_MS:.0f} ms), at most {embedded} text "
        f"embedded per rerun (target 1: the query): {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    corpus_table(args.repeats)
    rerun_table(args.repeats)


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
