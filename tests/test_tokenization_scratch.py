"""From-scratch tokenizers: word-level (OOV), character-level (lengths), BPE (training + GPT-2)."""

from __future__ import annotations

import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from llmlab import assets
from llmlab.tokenization import (
    DEFAULT_CORPUS,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    replay,
    sequence_lengths,
    train,
)
from llmlab.tokenization.bpe import GPT2_PATTERN, get_stats, merge

AWKWARD = [
    "",
    "   ",
    "a\t\tb\n\n\nc  ",
    "def f(x):\n    return x * 2  # doubled\n",
    "3.14159 + 2,000 = 12345 and 1e-9",
    "family: 👩‍👩‍👧 rocket 🚀",
    "我想在apple工作",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "It's what they'd've said… “quoted” <|endoftext|>",
]


@pytest.fixture(scope="module")
def botchan() -> str:
    return assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gpt2_paths():
    path = assets.pack_path("gpt2-tiktoken", "gpt2.tiktoken")
    reference = tiktoken.Encoding(
        name="gpt2-reference",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": 50256},
    )
    return BPETokenizer.from_tiktoken_file(path), reference


def test_word_level_default_corpus_and_oov():
    tokenizer = WordTokenizer.from_corpus(DEFAULT_CORPUS)
    # [PAD], [UNK], then the 19 distinct lowercased words in order of first appearance
    assert tokenizer.vocab_size == 2 + 19
    assert tokenizer.id_to_word[:4] == ["[PAD]", "[UNK]", "the", "quick"]
    assert tokenizer.encode("The lazy cat") == [2, 8, 1]
    assert tokenizer.oov_words("The lazy cat!") == ["cat", "!"]
    assert tokenizer.vocab_size == 21  # OOV words are reported, never added
    assert tokenizer.decode(tokenizer.encode("the next token")) == "the next token"


def test_word_level_options_and_padding():
    cased = WordTokenizer.from_corpus(["Hello, world."], lowercase=False, split_punctuation=False)
    assert cased.id_to_word[2:] == ["Hello,", "world."]
    assert cased.encode("hello, world.") == [1, 3]
    split = WordTokenizer.from_corpus(["Hello, world."])
    assert split.id_to_word[2:] == ["hello", ",", "world", "."]
    assert split.encode_batch(["hello world", "world", ""]) == [[2, 4], [4, 0], [0, 0]]
    with pytest.raises(ValueError, match="pad_to=1"):
        split.encode_batch(["hello world"], pad_to=1)
    with pytest.raises(ValueError, match="ids contains 99"):
        split.decode([99])


@pytest.mark.parametrize("text", AWKWARD)
def test_character_level_round_trip_and_lengths(text):
    for kind in ("unicode", "bytes"):
        tokenizer = CharTokenizer(kind)
        assert tokenizer.decode(tokenizer.encode(text)) == text
    lengths = sequence_lengths(text)
    assert lengths.unicode == len(text)
    assert lengths.bytes == len(text.encode("utf-8"))
    assert lengths.ascii_unknown == sum(1 for c in text if not (c.isascii() and c.isprintable()))


def test_character_level_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind='words'"):
        CharTokenizer("words")


def test_get_stats_and_merge_examples():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]


def test_bpe_training_trace_on_botchan(botchan):
    tokenizer, trace = train(botchan, vocab_size=1000)
    assert tokenizer.vocab_size == 1000 and len(trace) == 744
    # The first merge is the most frequent pair of the corpus: " t" (space, then t).
    assert trace[0].token == b" t" and trace[0].pair == (32, 116)
    counts = get_stats(list(b"".join(c.encode() for c in tokenizer.split(botchan))))
    assert trace[0].count <= counts[(32, 116)]
    assert [step.new_id for step in trace] == list(range(256, 1000))
    assert all(a.count >= b.count for a, b in zip(trace, trace[1:], strict=False))
    sample = botchan[:2000]
    assert tokenizer.decode(tokenizer.encode(sample)) == sample
    assert len(tokenizer.encode(sample)) < len(sample.encode()) / 2
    # Replaying every merge gives the same tokens as encoding with the trained ranks.
    replayed = replay(sample, trace, len(trace))
    assert replayed == [tokenizer.vocab[i] for i in tokenizer.encode(sample)]
    assert replay(sample, trace, 0) == [bytes([b]) for b in sample.encode()]


@pytest.mark.parametrize("vocab_size", [255, 5001, 300.5, "300"])
def test_bpe_vocab_size_is_validated(vocab_size):
    with pytest.raises(ValueError, match="vocab_size"):
        train("some text", vocab_size=vocab_size)


def test_bpe_replay_steps_are_validated():
    _, trace = train("low lower lowest", vocab_size=260)
    with pytest.raises(ValueError, match="steps=5"):
        replay("low", trace, 5)


@pytest.mark.parametrize("text", AWKWARD)
def test_bpe_trained_round_trips(text):
    tokenizer, _ = train("the theme of these thesis: there, then 🚀 안녕", vocab_size=300)
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_bpe_with_gpt2_ranks_equals_tiktoken_on_botchan(gpt2_paths, botchan):
    scratch, reference = gpt2_paths
    assert scratch.encode(botchan) == reference.encode_ordinary(botchan)


@pytest.mark.parametrize("text", AWKWARD)
def test_bpe_with_gpt2_ranks_equals_tiktoken_on_awkward_text(gpt2_paths, text):
    scratch, reference = gpt2_paths
    assert scratch.encode(text) == reference.encode_ordinary(text)
    assert scratch.decode(scratch.encode(text)) == text
    assert scratch.encode("hello world") == [31373, 995]
