"""The notebook-facing API: `import llmlab` is quick and every public name resolves."""

from __future__ import annotations

import subprocess
import sys

import llmlab


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
