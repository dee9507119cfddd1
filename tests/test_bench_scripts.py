"""The benchmarks: each prints the CPU it ran on before its figures."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if '__name__ == "__main__"' in p.read_text())


def _main_block(tree: ast.Module) -> ast.If:
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return node
    raise AssertionError("no __main__ block")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_prints_its_cpu_before_running(script):
    block = _main_block(ast.parse(script.read_text()))
    lines = {ast.unparse(n.func): n.lineno for n in ast.walk(block) if isinstance(n, ast.Call)}
    assert "print_header" in lines, f"{script.name} does not print the CPU it ran on"
    assert lines["print_header"] < lines["main"], "the CPU comes first"


def test_there_are_benchmarks():
    assert len(SCRIPTS) >= 15
