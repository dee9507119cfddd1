"""Word-level tokenization: one id per word in a vocabulary built from a corpus.

It is the most intuitive scheme and shows the out-of-vocabulary (OOV) problem: a word the corpus
never contained has no id, so it becomes `[UNK]` and its meaning is lost.

    >>> tokenizer = WordTokenizer.from_corpus(["the cat sat", "the dog"])
    >>> tokenizer.encode("the bird sat")
    [2, 1, 4]
    >>> tokenizer.oov_words("the bird sat")
    ['bird']
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

PAD, UNK = "[PAD]", "[UNK]"
DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog",
    "Tokenization converts text to numbers",
    "Large language models predict the next token",
]
_WORDS_AND_PUNCTUATION = regex.compile(r"\w+|[^\w\s]")
_WORDS = regex.compile(r"\S+")


@dataclass(frozen=True)
class WordPiece:
    """One word of the input: its text, id, whether it was unknown, and its character span."""

    text: str
    id: int
    unknown: bool
    start: int
    end: int


class WordTokenizer:
    """Splits on whitespace (and optionally punctuation); `[PAD]` = 0 and `[UNK]` = 1."""

    def __init__(self, *, words: list[str], lowercase: bool = True, split_punctuation: bool = True):
        self.lowercase = lowercase
        self.split_punctuation = split_punctuation
        self.id_to_word = [PAD, UNK]
        for word in words:
            if word not in self.id_to_word:
                self.id_to_word.append(word)
        self.word_to_id = {word: index for index, word in enumerate(self.id_to_word)}
        self.name = "word-level"

    @classmethod
    def from_corpus(
        cls, corpus: list[str] | str, *, lowercase: bool = True, split_punctuation: bool = True
    ) -> WordTokenizer:
        """Vocabulary = the words of the corpus in order of first appearance (after `[PAD]`, `[UNK]`)."""
        lines = corpus.splitlines() if isinstance(corpus, str) else list(corpus)
        probe = cls(words=[], lowercase=lowercase, split_punctuation=split_punctuation)
        words = [piece for line in lines for piece, _, _ in probe._split(line)]
        return cls(words=words, lowercase=lowercase, split_punctuation=split_punctuation)

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_word)

    def _split(self, text: str) -> list[tuple[str, int, int]]:
        pattern = _WORDS_AND_PUNCTUATION if self.split_punctuation else _WORDS
        out = []
        for match in pattern.finditer(text):
            word = match.group()
            out.append((word.lower() if self.lowercase else word, match.start(), match.end()))
        return out

    def pieces(self, text: str) -> list[WordPiece]:
        out = []
        for word, start, end in self._split(text):
            index = self.word_to_id.get(word)
            out.append(WordPiece(word, 1 if index is None else index, index is None, start, end))
        return out

    def encode(self, text: str) -> list[int]:
        return [piece.id for piece in self.pieces(text)]

    def oov_words(self, text: str) -> list[str]:
        """Words of `text` missing from the vocabulary (reported, never silently added)."""
        return [piece.text for piece in self.pieces(text) if piece.unknown]

    def decode(self, ids: list[int]) -> str:
        """Words joined by spaces: spacing and case are not recoverable, padding is dropped."""
        for index in ids:
            if not 0 <= index < self.vocab_size:
                raise ValueError(f"ids contains {index!r}; allowed: 0..{self.vocab_size - 1}")
        return " ".join(self.id_to_word[index] for index in ids if index != 0)

    def encode_batch(self, texts: list[str], pad_to: int | None = None) -> list[list[int]]:
        """Encode several texts and pad them with `[PAD]` (0) to equal length.

        >>> WordTokenizer.from_corpus(["a b c"]).encode_batch(["a b c", "b"])
        [[2, 3, 4], [3, 0, 0]]
        """
        rows = [self.encode(text) for text in texts]
        longest = max((len(row) for row in rows), default=0)
        width = longest if pad_to is None else pad_to
        if width < longest:
            raise ValueError(f"pad_to={pad_to!r} is shorter than the longest text ({longest} ids)")
        return [row + [0] * (width - len(row)) for row in rows]
