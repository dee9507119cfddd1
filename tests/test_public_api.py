"""The notebook-facing API: `import llmlab` is quick and every public name resolves."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import llmlab

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(llmlab.__path__, "llmlab.")
    if not info.name.endswith("__main__")
)


def test_every_public_name_resolves():
    for name in llmlab.__all__:
        assert getattr(llmlab, name) is not None, name


def test_import_does_not_pull_in_torch():
    code = "import sys, llmlab; print('torch' in sys.modules, 'streamlit' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "False"]


def test_tokenize_matches_the_tiktoken_reference():
    assert llmlab.tokenize("hello world") == [31373, 995]
    assert llmlab.tokenize("hello world", "cl100k_base") == [15339, 1917]


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_each_module_hold(name):
    """Every `>>>` example in the package's docstrings gives what it says."""
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_module_examples_are_found():
    assert len(MODULES) >= 25 and "llmlab.chat" in MODULES and "llmlab.tokenization.bpe" in MODULES
