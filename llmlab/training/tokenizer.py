"""Tokenizers for a model trained here, as real Hugging Face fast tokenizers.

Every page of the lab reads a model's tokenizer through the Hugging Face interface
(`tokenizer(text)["input_ids"]`, `decode`, `eos_token_id`, ...), and `save_pretrained` writes it
next to the weights. So the character-level tokenizer and the BPE learnt from scratch on the
Tokenizers page are both rebuilt as `PreTrainedTokenizerFast` objects.

>>> tokenizer = char_tokenizer("hello")
>>> tokenizer("hole")["input_ids"], tokenizer.decode(tokenizer("hole")["input_ids"])
([3, 5, 4, 2], 'hole')
>>> len(tokenizer)  # two special tokens, then e, h, l, o
6
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmlab.tokenization import bpe

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

END = "<|endoftext|>"  # end of text; also used as padding and as the start of a sample
UNKNOWN = "<unk>"  # a character the training text never had
SPECIALS = (END, UNKNOWN)


def _wrap(backend, kind: str) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=END,
        bos_token=END,
        pad_token=END,
        unk_token=UNKNOWN,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = None
    tokenizer.init_kwargs["llmlab_kind"] = kind
    return tokenizer


def char_tokenizer(text: str) -> PreTrainedTokenizerFast:
    """One token per character of `text` (sorted by code point), after the two special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocabulary = {token: i for i, token in enumerate(SPECIALS)}
    for character in sorted(set(text)):
        vocabulary.setdefault(character, len(vocabulary))
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token=UNKNOWN))
    # Every single character (newlines too) is its own piece; the decoder glues them back.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIALS))
    return _wrap(backend, "char")


def bpe_tokenizer(text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """The byte-level BPE of the Tokenizers page (`llmlab.tokenization.bpe.train`), `vocab_size`
    tokens learnt from `text`, plus the two special tokens.

    Raises ValueError when the text has too few distinct pairs to learn that many merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    bpe.check_vocab_size(vocab_size)
    trained = bpe.train(text, vocab_size)
    learnt = bpe.MIN_VOCAB + len(trained.trace)
    if learnt < vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size} is more than this text allows: it has only enough "
            f"repeated pairs for {learnt} tokens. Choose at most {learnt}, or give more text."
        )
    # GPT-2's trick: each byte is shown as a printable character, so merges are plain strings.
    shown = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(shown[b] for b in token)

    tokens = [bytes([b]) for b in range(256)] + [step.token for step in trained.trace]
    vocabulary = {as_text(token): i for i, token in enumerate(tokens)}
    id_of = {i: as_text(token) for i, token in enumerate(tokens)}
    merges = [(id_of[step.pair[0]], id_of[step.pair[1]]) for step in trained.trace]
    backend = Tokenizer(models.BPE(vocabulary, merges))
    # The same GPT-2 split as `bpe.GPT2_PATTERN`, then bytes as characters.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIALS))
    return _wrap(backend, f"bpe-{vocab_size}")


def make_tokenizer(text: str, tokenizer: str = "char", vocab_size: int = 512):
    """`char_tokenizer(text)` or `bpe_tokenizer(text, vocab_size)` by name.

    >>> make_tokenizer("abc", "words")
    Traceback (most recent call last):
    ...
    ValueError: tokenizer='words' is not available; allowed: char, bpe
    """
    if tokenizer == "char":
        return char_tokenizer(text)
    if tokenizer == "bpe":
        return bpe_tokenizer(text, vocab_size)
    raise ValueError(f"tokenizer={tokenizer!r} is not available; allowed: char, bpe")
