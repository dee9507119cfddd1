"""Semantic search: the sentences of a corpus nearest in meaning to a query, beside a keyword match.

The corpus is embedded once; a query then costs one sentence through MiniLM and one product of
its vector with the corpus's vectors (cosine similarity, since every vector has length 1).
The keyword match counts the query's words found in each sentence: it finds "bank" in "The
bank raised its rates", but nothing for "how do I save money?" in "Put a little aside from
every pay cheque", which semantic search finds.

>>> corpus = Corpus(["A cat sleeps.", "Stocks fell.", "The dog barks at the cat."], ["a", "m", "a"])
>>> [hit.index for hit in keyword_search("the cat", corpus)]
[0, 2]
>>> import numpy as np
>>> vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
>>> [(hit.index, round(hit.score, 2)) for hit in semantic_search(np.array([0.8, 0.6]), vectors, corpus, 2)]
[(2, 0.96), (0, 0.8)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

# A pasted corpus is cut here: embedding 1,000 short sentences takes a few seconds on a laptop
# (bench/embeddings.py), and a student is not kept waiting much longer than that.
MAX_CORPUS = 1_000
PASTED_TOPIC = "my sentences"
# Words a keyword match ignores: they occur everywhere and say nothing of the topic.
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those i you he she we they me my your our their his her them us do
    does did how what which who whom why when where so not no than then there here can could will
    would should may might must shall all any some""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Corpus:
    """Sentences to search, each with a topic (the colour on the map)."""

    sentences: list[str]
    topics: list[str]

    def __len__(self) -> int:
        return len(self.sentences)


def lab_corpus() -> Corpus:
    """The corpus that ships with the lab: 200 short sentences on 10 topics, written for it.

    >>> corpus = lab_corpus()
    >>> len(corpus), len(set(corpus.topics))
    (200, 10)
    """
    text = resources.files("llmlab").joinpath("data/corpus.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t", 1) for line in text.splitlines()[1:] if line.strip()]
    return Corpus([sentence for _, sentence in rows], [topic for topic, _ in rows])


def pasted_corpus(text: str, limit: int = MAX_CORPUS) -> tuple[Corpus, list[str]]:
    """A corpus typed or pasted by the student, one sentence per line, and notices.

    A line "topic<TAB>sentence" gives its own topic; other lines get "my sentences". Repeated
    sentences are kept once, and the list is cut at `limit`.

    >>> corpus, notices = pasted_corpus("sport\\tA goal!\\nRain again\\nRain again")
    >>> corpus.topics, notices
    (['sport', 'my sentences'], ['1 repeated sentence was left out: each sentence is used once.'])
    """
    if limit < 1:
        raise ValueError(f"limit={limit!r} must be at least 1")
    seen: dict[str, str] = {}  # sentence -> topic, in order
    repeated = 0
    for line in text.splitlines():
        topic, tab, sentence = line.strip().partition("\t")
        if not (tab and topic.strip() and sentence.strip()):
            topic, sentence = PASTED_TOPIC, line.strip()
        sentence = sentence.strip()
        if not sentence:
            continue
        if sentence in seen:
            repeated += 1
        else:
            seen[sentence] = topic.strip()[:40]
    notices = []
    if repeated:
        notices.append(
            f"{repeated:,} repeated sentence{'s were' if repeated > 1 else ' was'} left out: "
            "each sentence is used once."
        )
    if len(seen) > limit:
        notices.append(
            f"{len(seen):,} sentences were given; only the first {limit:,} are used "
            "(the limit here)."
        )
    kept = list(seen.items())[:limit]
    return Corpus([s for s, _ in kept], [t for _, t in kept]), notices


def words(text: str) -> list[str]:
    """The words of `text` a keyword match looks for: lowercase, stopwords left out.

    >>> words("How do I open a Bank account?")
    ['open', 'bank', 'account']
    """
    return [word for word in re.findall(r"\w+", text.lower()) if word not in STOPWORDS]


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int  # 1 = best
    index: int  # position in the corpus
    sentence: str
    topic: str
    score: float  # cosine similarity, or the number of query words found
    matched: tuple[str, ...] = ()  # the query words found (keyword match)


def semantic_search(
    query_vector: np.ndarray, corpus_vectors: np.ndarray, corpus: Corpus, top: int = 5
) -> list[Hit]:
    """The `top` sentences whose vectors are nearest the query's, by exact cosine similarity.

    Scores are computed in float64 from vectors of length 1; a tie keeps corpus order.
    """
    if top < 1:
        raise ValueError(f"top={top!r} must be at least 1")
    if len(corpus_vectors) != len(corpus):
        raise ValueError(
            f"corpus_vectors has {len(corpus_vectors)} rows for a corpus of {len(corpus)}"
        )
    if not len(corpus):
        return []
    query = np.asarray(query_vector, dtype=np.float64)
    matrix = np.asarray(corpus_vectors, dtype=np.float64)
    scores = (matrix @ query) / np.maximum(
        np.linalg.norm(matrix, axis=1) * np.linalg.norm(query), 1e-12
    )
    order = np.lexsort((np.arange(len(scores)), -scores))[:top]
    return [
        Hit(rank, int(i), corpus.sentences[i], corpus.topics[i], float(scores[i]))
        for rank, i in enumerate(order, start=1)
    ]


def keyword_search(query: str, corpus: Corpus, top: int = 5) -> list[Hit]:
    """Sentences sharing words with the query, most shared words first (a tie keeps corpus
    order); sentences sharing none are not results."""
    if top < 1:
        raise ValueError(f"top={top!r} must be at least 1")
    wanted = list(dict.fromkeys(words(query)))
    found = []
    for index, sentence in enumerate(corpus.sentences):
        present = set(words(sentence))
        matched = tuple(word for word in wanted if word in present)
        if matched:
            found.append((-len(matched), index, matched))
    found.sort()
    return [
        Hit(rank, index, corpus.sentences[index], corpus.topics[index], float(-count), matched)
        for rank, (count, index, matched) in enumerate(found[:top], start=1)
    ]
