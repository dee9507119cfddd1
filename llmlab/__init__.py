"""LLM Lab: see how a large language model works by running real ones.

The package is importable without Streamlit, so every result the pages show can be
reproduced in a notebook:

    >>> import llmlab
    >>> llmlab.list_models()[:2]
    ['gemma-3-270m', 'smollm2-135m-instruct']
    >>> llmlab.load_tokenizer("gpt2").encode("hello world")
    [31373, 995]

The names below are loaded on first use, so `import llmlab` stays quick (torch and
transformers are imported only when a model is touched).
"""

from __future__ import annotations

import importlib
from typing import Any

from llmlab.assets import AssetError
from llmlab.registry import MODELS, resolve_model

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    # models
    "load": ("llmlab.models", "load"),
    "load_model": ("llmlab.models", "load"),
    "LoadedModel": ("llmlab.models", "LoadedModel"),
    "ModelLoadError": ("llmlab.models", "ModelLoadError"),
    # this machine: its CPU, and the precision measured faster on it
    "cpu_facts": ("llmlab.cpu", "cpu_facts"),
    "default_precision": ("llmlab.precision", "default_precision"),
    # tokenizers
    "load_tokenizer": ("llmlab.tokenization", "load"),
    "list_tokenizers": ("llmlab.tokenization", "list_tokenizers"),
    "train_bpe": ("llmlab.tokenization", "train"),
    # architecture
    "gpt2_skeleton": ("llmlab.architecture", "gpt2_skeleton"),
    "architecture_summary": ("llmlab.architecture", "architecture_summary"),
    "parameter_breakdown": ("llmlab.parameters", "parameter_breakdown"),
    "memory_by_dtype": ("llmlab.parameters", "memory_by_dtype"),
    "forward_trace": ("llmlab.forward_pass", "forward_trace"),
    "attention_maps": ("llmlab.forward_pass", "attention_maps"),
    "embedding_contrast": ("llmlab.embeddings", "embedding_contrast"),
    # embeddings
    "sentence_embeddings": ("llmlab.embeddings", "sentence_embeddings"),
    "embedding_steps": ("llmlab.embeddings", "embedding_steps"),
    "semantic_search": ("llmlab.embeddings", "semantic_search"),
    "word_analogy": ("llmlab.embeddings", "word_analogy"),
    # next token
    "next_token_distribution": ("llmlab.generation.next_token", "next_token_distribution"),
    "prompt_surprisal": ("llmlab.generation.next_token", "prompt_surprisal"),
    "logit_lens": ("llmlab.generation.next_token", "logit_lens"),
    "waterfall": ("llmlab.generation.next_token", "waterfall"),
    "knock_out_effect": ("llmlab.generation.knockouts", "knock_out_effect"),
    "head_sweep": ("llmlab.generation.knockouts", "head_sweep"),
    "build_filters": ("llmlab.generation.filters", "build_filters"),
    # decoding
    "generate": ("llmlab.generation.decoding", "generate"),
    "iter_generate": ("llmlab.generation.decoding", "iter_generate"),
    "branch": ("llmlab.generation.branching", "branch"),
    "iter_branch": ("llmlab.generation.branching", "iter_branch"),
    "temperature_ladder": ("llmlab.generation.ladder", "temperature_ladder"),
    # training
    "train_tiny_gpt": ("llmlab.training", "train_tiny_gpt"),
    "load_trained": ("llmlab.training", "load_trained"),
    "save_trained": ("llmlab.training", "save_trained"),
    # chat
    "render_chat": ("llmlab.chat", "render_chat"),
    "compare": ("llmlab.chat", "compare"),
    # class mode
    "ClassStore": ("llmlab.classroom.store", "ClassStore"),
    "class_store": ("llmlab.classroom.store", "store_for"),
}


def list_models() -> list[str]:
    """Every registered model name (offline first, then Hub models)."""
    return list(MODELS)


def tokenize(text: str, tokenizer: str = "gpt2") -> list[int]:
    """Token ids of `text` under a tokenizer of the zoo, e.g. `tokenize("hello world")`."""
    return __getattr__("load_tokenizer")(tokenizer).encode(text)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'llmlab' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["AssetError", "MODELS", "list_models", "resolve_model", "tokenize", *_LAZY]
