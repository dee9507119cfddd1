"""Embeddings: words and sentences as vectors, and what those vectors are good for.

- `sentences`: all-MiniLM-L6-v2, a sentence to one vector of 384 numbers, step by step
- `similarity`: cosine similarity and how to read a score
- `search`: semantic search over a corpus, beside a keyword match
- `projection`: a 2-D map of vectors (PCA)
- `classify`: classification by nearest centroid
- `analogy`: king - man + woman on a static table
- `contextual`: a word's static table row against its hidden state in context

>>> from llmlab import embeddings
>>> embeddings.words("The river bank")
['river', 'bank']
"""

from __future__ import annotations

from llmlab.embeddings.analogy import (
    Analogy,
    StaticTable,
    encoder_table,
    model_table,
    nearest_tokens,
    word_analogy,
)
from llmlab.embeddings.classify import (
    Centroids,
    Classified,
    class_centroids,
    classify,
    labelled_examples,
)
from llmlab.embeddings.contextual import (
    EmbeddingContrast,
    ProjectedPoint,
    contains_word,
    embedding_contrast,
    embedding_projection,
)
from llmlab.embeddings.projection import MapPoint, pca_2d, text_map
from llmlab.embeddings.search import (
    MAX_CORPUS,
    Corpus,
    Hit,
    keyword_search,
    lab_corpus,
    pasted_corpus,
    semantic_search,
    words,
)
from llmlab.embeddings.sentences import (
    MAX_TOKENS,
    Embedded,
    EmbeddingSteps,
    SentenceEncoder,
    default_encoder,
    embedding_steps,
    encode_sentences,
    load_encoder,
    sentence_embeddings,
)
from llmlab.embeddings.similarity import cosine_matrix, most_and_least_similar, reading
from llmlab.embeddings.texts import SentenceLines, label, sentence_lines

__all__ = [
    "MAX_CORPUS",
    "MAX_TOKENS",
    "Analogy",
    "Centroids",
    "Classified",
    "Corpus",
    "Embedded",
    "EmbeddingContrast",
    "EmbeddingSteps",
    "Hit",
    "MapPoint",
    "ProjectedPoint",
    "SentenceEncoder",
    "SentenceLines",
    "StaticTable",
    "class_centroids",
    "classify",
    "contains_word",
    "cosine_matrix",
    "default_encoder",
    "embedding_contrast",
    "embedding_projection",
    "embedding_steps",
    "encoder_table",
    "encode_sentences",
    "keyword_search",
    "lab_corpus",
    "label",
    "labelled_examples",
    "load_encoder",
    "model_table",
    "most_and_least_similar",
    "nearest_tokens",
    "pasted_corpus",
    "pca_2d",
    "reading",
    "semantic_search",
    "sentence_embeddings",
    "sentence_lines",
    "text_map",
    "word_analogy",
    "words",
]
