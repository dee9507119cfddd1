"""Byte-level BPE from scratch, the way GPT-2 does it, with every training step kept as data.

Text is first cut into chunks by a regular expression (words with their leading space, numbers,
punctuation runs, whitespace), so a merge never glues the end of one word to the next. Each chunk
is then a list of bytes (0..255), and training repeatedly merges the most frequent adjacent pair.

    >>> tokenizer, trace = train("low lower lowest", vocab_size=260)
    >>> [step.token for step in trace]
    [b'lo', b'low', b' low', b' lowe']
    >>> tokenizer.decode(tokenizer.encode("lowest"))
    'lowest'
"""

from __future__ import annotations

import base64
import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import regex

# GPT-2's pre-split pattern (tiktoken's r50k_base): contractions, optional space + letters,
# optional space + digits, optional space + other symbols, then whitespace runs.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
MIN_VOCAB = 256
MAX_VOCAB = 5000


@dataclass(frozen=True)
class MergeStep:
    """One training merge: `pair` (two token ids) became token `new_id` with bytes `token`."""

    rank: int  # 0 for the first merge
    pair: tuple[int, int]
    new_id: int
    token: bytes
    count: int  # how often the pair occurred when it was chosen


def get_stats(ids: list[int], counts: Counter | None = None, weight: int = 1) -> Counter:
    """Count adjacent pairs.

    >>> get_stats([1, 2, 3, 1, 2])
    Counter({(1, 2): 2, (2, 3): 1, (3, 1): 1})
    """
    counts = Counter() if counts is None else counts
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] += weight
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise ValueError(
            f"vocab_size={vocab_size!r} is out of range; allowed: an integer from "
            f"{MIN_VOCAB} (the 256 single bytes) to {MAX_VOCAB}"
        )


class BPETokenizer:
    """A byte-level BPE tokenizer: `ranks` maps each token's bytes to its id (lower = merged earlier).

    Encoding a chunk repeatedly merges the adjacent pair whose joined bytes have the lowest rank,
    exactly as tiktoken does, so loading GPT-2's own ranks reproduces GPT-2's ids.
    """

    def __init__(self, *, ranks: dict[bytes, int], pattern: str = GPT2_PATTERN, name: str = "bpe"):
        self.name = name
        self.ranks = ranks
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self.vocab: dict[int, bytes] = {rank: token for token, rank in ranks.items()}
        self._cache: dict[str, list[int]] = {}  # chunk -> ids: real text repeats words a lot

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def from_tiktoken_file(cls, path: str | Path, name: str = "gpt2-from-scratch") -> BPETokenizer:
        """Load ranks in tiktoken's format: one `base64(token) rank` per line."""
        ranks: dict[bytes, int] = {}
        for line in Path(path).read_bytes().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return cls(ranks=ranks, name=name)

    def _encode_chunk(self, chunk: str) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        while len(parts) > 1:
            best_rank, best_at = None, -1
            for i in range(len(parts) - 1):
                rank = self.ranks.get(parts[i] + parts[i + 1])
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_at = rank, i
            if best_rank is None:
                break
            parts[best_at : best_at + 2] = [parts[best_at] + parts[best_at + 1]]
        ids = [self.ranks[part] for part in parts]
        if len(self._cache) < 200_000:
            self._cache[chunk] = ids
        return ids

    def split(self, text: str) -> list[str]:
        """The regex pre-split chunks, e.g. "Hello world" -> ["Hello", " world"]."""
        return self._regex.findall(text)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for chunk in self.split(text):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        try:
            return b"".join(self.vocab[i] for i in ids)
        except KeyError as error:
            raise ValueError(
                f"ids contains {error.args[0]!r}, not in this vocabulary (0..{self.vocab_size - 1})"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


@dataclass
class TrainResult:
    tokenizer: BPETokenizer
    trace: list[MergeStep]

    def __iter__(self):  # lets `tokenizer, trace = train(...)` unpack
        return iter((self.tokenizer, self.trace))


def train(text: str, vocab_size: int, pattern: str = GPT2_PATTERN) -> TrainResult:
    """Learn `vocab_size - 256` merges from `text`; returns the tokenizer and the step trace.

    Works on unique chunks weighted by their count, and after each merge updates only the pair
    counts of the chunks that contained the merged pair, so botchan.txt trains in seconds.
    """
    check_vocab_size(vocab_size)
    chunk_counts = Counter(regex.findall(pattern, text))
    words: list[list[int]] = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    weights = list(chunk_counts.values())
    stats: Counter = Counter()
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words holding it
    for index, ids in enumerate(words):
        get_stats(ids, stats, weights[index])
        for pair in zip(ids, ids[1:], strict=False):
            where[pair].add(index)
    vocab = {i: bytes([i]) for i in range(256)}
    trace: list[MergeStep] = []
    # A max-heap of (-count, pair) with lazy deletion: an entry is stale when its count no
    # longer matches `stats`; ties pop the smallest pair first, so training is deterministic.
    heap = [(-count, pair) for pair, count in stats.items()]
    heapq.heapify(heap)
    while len(trace) < vocab_size - 256 and heap:
        negative, pair = heapq.heappop(heap)
        if stats.get(pair, 0) != -negative or negative == 0:
            continue
        count = -negative
        new_id = 256 + len(trace)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        trace.append(MergeStep(len(trace), pair, new_id, vocab[new_id], count))
        changed: set[tuple[int, int]] = set()
        for index in where.pop(pair, ()):
            old = words[index]
            new = merge(old, pair, new_id)
            weight = weights[index]
            for p in zip(old, old[1:], strict=False):  # remove the word's old pairs...
                stats[p] -= weight
                changed.add(p)
            for p in zip(new, new[1:], strict=False):  # ...and add back its new ones
                stats[p] += weight
                where[p].add(index)
                changed.add(p)
            words[index] = new
        stats.pop(pair, None)
        changed.discard(pair)
        for p in changed:
            if stats[p] > 0:
                heapq.heappush(heap, (-stats[p], p))
            else:
                del stats[p]
    ranks: dict[bytes, int] = {}
    for token_id, token in vocab.items():
        ranks.setdefault(token, token_id)
    return TrainResult(BPETokenizer(ranks=ranks, pattern=pattern, name="bpe-trained"), trace)


def replay(
    text: str, trace: list[MergeStep], steps: int, pattern: str = GPT2_PATTERN
) -> list[bytes]:
    """The text's tokens (as bytes) after applying only the first `steps` merges of `trace`.

    >>> _, trace = train("low lower lowest", vocab_size=260)
    >>> replay("lowest", trace, 0)[:3], replay("lowest", trace, 2)
    ([b'l', b'o', b'w'], [b'low', b'e', b's', b't'])
    """
    if not 0 <= steps <= len(trace):
        raise ValueError(f"steps={steps!r} is out of range; allowed: 0 to {len(trace)}")
    vocab = {i: bytes([i]) for i in range(256)}
    for step in trace[:steps]:
        vocab[step.new_id] = step.token
    out: list[bytes] = []
    for chunk in regex.findall(pattern, text):
        ids = list(chunk.encode("utf-8"))
        for step in trace[:steps]:
            if len(ids) < 2:
                break
            ids = merge(ids, step.pair, step.new_id)
        out.extend(vocab[i] for i in ids)
    return out
