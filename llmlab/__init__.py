"""LLM Lab: see how a large language model works by running real ones.

The package is importable without Streamlit, so every result the pages show can be
reproduced in a notebook:

    >>> import llmlab
    >>> llmlab.list_models()[:2]
    ['gemma-3-270m', 'smollm2-135m-instruct']
"""

from __future__ import annotations

from llmlab.assets import AssetError
from llmlab.models import LoadedModel, ModelLoadError, load
from llmlab.registry import MODELS, resolve_model


def list_models() -> list[str]:
    """Every registered model name (offline first, then Hub models)."""
    return list(MODELS)


load_model = load

__all__ = [
    "AssetError",
    "LoadedModel",
    "ModelLoadError",
    "MODELS",
    "list_models",
    "load",
    "load_model",
    "resolve_model",
]
