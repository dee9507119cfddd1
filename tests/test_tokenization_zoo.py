"""The zoo of real tokenizers: exact reference ids, round trips, honest pieces."""

from __future__ import annotations

import functools
import unicodedata

import pytest

from llmlab import tokenization
from llmlab.tokenization import _gguf

AWKWARD = [
    "",
    "   ",
    "a\t\tb\n\n\nc  ",
    "def f(x):\n    if x:\n\treturn [x ** 2 for _ in range(3)]\n",
    "3.14159 + 2,000 = 12345; 1/3 ≈ 0.333",
    "family: 👩‍👩‍👧 rocket 🚀",
    "我想在apple工作，你呢？",
    "안녕하세요, 세계!",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    " leading space and trailing  ",
]
NAMES = tokenization.list_tokenizers()


@functools.cache
def zoo(name: str) -> tokenization.Tokenizer:
    return tokenization.load(name)


def test_every_contract_name_is_available():
    expected = {"gpt2", "gpt2-hf", "cl100k_base", "o200k_base", "bert-wordpiece", "llama-spm"}
    expected |= {"phi-3", "qwen2", "starcoder", "falcon", "deepseek-coder", "gemma-3", "smollm2"}
    assert expected | {"mistral"} <= set(NAMES)


@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        ("gpt2", "hello world", [31373, 995]),
        ("gpt2-hf", "hello world", [31373, 995]),
        ("cl100k_base", "hello world", [15339, 1917]),
        (
            "gpt2",
            "Unbelievable tokenization powers! 🚀",
            [3118, 6667, 11203, 540, 11241, 1634, 5635, 0, 12520, 248, 222],
        ),
        (
            "gpt2",
            "The 🌟 star-player scored 40 points!",
            [464, 12520, 234, 253, 3491, 12, 7829, 7781, 2319, 2173, 0],
        ),
        (
            "cl100k_base",
            "The 🌟 star-player scored 40 points!",
            [791, 11410, 234, 253, 6917, 43467, 16957, 220, 1272, 3585, 0],
        ),
    ],
)
def test_reference_ids(name, text, ids):
    assert zoo(name).encode(text) == ids
    assert zoo(name).decode(ids) == text


@pytest.mark.parametrize("family", _gguf.FAMILIES)
def test_gguf_tokenizers_match_llama_cpp_references(family):
    name = {"gpt-2": "gpt2-hf"}.get(family, family)
    tokenizer = zoo(name)
    cases = _gguf.read_reference(family)
    assert len(cases) > 40
    for text, ids in cases:
        assert tokenizer.encode(text) == ids, text


def test_gpt2_tiktoken_and_hugging_face_agree_on_botchan():
    from llmlab import assets

    text = assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")[:60_000]
    assert zoo("gpt2").encode(text) == zoo("gpt2-hf").encode(text)


def test_tokenizer_facts():
    assert zoo("gpt2").vocab_size == 50257 and zoo("cl100k_base").vocab_size == 100277
    assert zoo("o200k_base").vocab_size == 200019 and zoo("bert-wordpiece").vocab_size == 30522
    assert zoo("mistral").vocab_size == 32000 and zoo("gemma-3").vocab_size == 262144
    assert zoo("smollm2").vocab_size == 49152
    assert zoo("bert-wordpiece").lowercases and not zoo("gpt2").lowercases
    assert zoo("llama-spm").adds_prefix_space and zoo("mistral").adds_prefix_space
    assert not zoo("gpt2").adds_prefix_space
    assert zoo("gpt2").special_tokens == {"<|endoftext|>": 50256}
    assert "<|im_start|>" in zoo("smollm2").special_tokens


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_pieces(name, text):
    tokenizer = zoo(name)
    ids = tokenizer.encode(text)
    decoded = tokenizer.decode(ids)
    if not tokenizer.lowercases:
        assert decoded == text
    else:
        # BERT's documented normalization: lowercased, accents stripped, whitespace between words
        # not kept, characters missing from its vocabulary become [UNK].
        kept = "".join(decoded.replace("[UNK]", "").split())
        target = unicodedata.normalize("NFC", "".join(tokenizer.normalize(text).split()))
        remaining = iter(target)
        assert all(char in remaining for char in unicodedata.normalize("NFC", kept))
        if text.isascii():
            assert kept == target
    pieces = tokenizer.pieces(text)
    assert [p.id for p in pieces] == ids
    starts = [p.start for p in pieces]
    assert starts == sorted(starts)
    assert all(0 <= p.start <= p.end <= len(text) for p in pieces)
    if not tokenizer.lowercases:
        assert b"".join(p.data for p in pieces).replace(b" ", b"") == text.encode().replace(
            b" ", b""
        )
        whole = [p for p in pieces if not p.fragment]
        assert all(text[p.start : p.end] in p.text for p in whole)


def test_emoji_pieces_are_byte_fragments_sharing_one_span():
    pieces = zoo("gpt2").pieces("Unbelievable tokenization powers! 🚀")
    rocket = pieces[-3:]
    assert [p.id for p in rocket] == [12520, 248, 222]
    assert all(p.fragment for p in rocket)
    assert b"".join(p.data for p in rocket) == " 🚀".encode()
    assert {(p.start, p.end) for p in rocket[1:]} == {(34, 35)}
    assert rocket[0].label() == "·<F0 9F>" and rocket[1].label() == "<9A>"
    assert (pieces[0].text, pieces[0].start, pieces[0].end) == ("Un", 0, 2)


def test_control_characters_and_lone_surrogates_do_not_crash():
    text = "bell\x07 null\x00 lone\ud800 end"
    for name in NAMES:
        tokenizer = zoo(name)
        pieces = tokenizer.pieces(text)
        assert pieces and pieces[-1].end <= len(text)
    assert tokenization.clean_text(text) == "bell\x07 null\x00 lone\ufffd end"
    assert tokenization.visible("a\x07\tb\n") == "a␇→b↵"


def test_bad_names_and_sizes_raise_clear_errors():
    with pytest.raises(ValueError, match="tokenizer='no such thing'.*available: gpt2"):
        tokenization.load("no such thing")
    with pytest.raises(ValueError, match="at most 100,000 characters"):
        zoo("gpt2").encode("x" * 100_001)
    with pytest.raises(ValueError, match="ids contains 50257"):
        zoo("gpt2").decode([50257])


LONG = "Tokenization of a longer text, 10 times: 🚀 ünïcödé 한국어.\n" * 10


@pytest.mark.parametrize("text", [*AWKWARD, LONG, "bell\x07 lone\ud800 end"])
@pytest.mark.parametrize("name", NAMES)
def test_summary_counts_what_pieces_holds(name, text):
    tokenizer = zoo(name)
    text = f"{text} ({name})"  # a text no other test asked for: nothing comes from the cache
    summary = tokenizer.summary(text, limit=3)
    pieces = tokenizer.pieces(text)
    assert summary.tokens == len(pieces)
    assert summary.unknown == sum(p.unknown for p in pieces)
    assert summary.fragments == sum(p.fragment for p in pieces)
    assert summary.first == pieces[:3]
    assert tokenizer.summary(text, limit=3) == summary  # now from the cache of recent pieces


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        ("abc", [b"xy", b"zzzz"]),  # tokens that do not spell the text: clipped spans
        ("é", [b"\xc3", b"\xa9x"]),
        ("é", [b"\xc3", b"\xa9"]),
        ("ab", [b" ab"]),  # SentencePiece's leading space
        ("a🚀b", [b"a\xf0", b"\x9f\x9a\x80", b"b"]),
        ("x\ud800y", [b"x?y"]),
        ("", []),
    ],
)
def test_summarize_agrees_with_align(text, chunks):
    from llmlab.tokenization.pieces import align, summarize

    ids = list(range(len(chunks)))
    pieces = align(text, ids, chunks, unknown_id=1)
    summary = summarize(text, ids, chunks, unknown_id=1, limit=1)
    assert (summary.tokens, summary.first) == (len(pieces), pieces[:1])
    assert summary.fragments == sum(p.fragment for p in pieces)
    assert summary.unknown == sum(p.unknown for p in pieces)


def test_pieces_are_cached_but_returned_as_copies():
    tokenizer = zoo("gpt2")
    first = tokenizer.pieces("a cached text")
    first.clear()
    assert [p.id for p in tokenizer.pieces("a cached text")] == tokenizer.encode("a cached text")
    with pytest.raises(ValueError, match="limit=-1"):
        tokenizer.summary("x", limit=-1)


def test_chips_stop_at_the_limit_and_escape_the_text():
    from llmlab.tokenization.samples import pieces_html

    pieces = zoo("gpt2").pieces("<b>bold</b> & 🚀 " * 400)
    chips = pieces_html(pieces, limit=1000)
    assert chips.count('<span class="tok ') == 1000
    assert f"… and {len(pieces) - 1000:,} more tokens" in chips
    assert "<b>" not in chips and "</b>" not in chips and "&lt;/" in chips
    assert chips.count("tok-dash") == sum(p.fragment for p in pieces[:1000])
    summary = zoo("gpt2").summary("<b>bold</b> & 🚀 " * 400)
    assert pieces_html(summary.first, total=summary.tokens) == chips
