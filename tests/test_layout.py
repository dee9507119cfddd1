"""The package's layout holds: Streamlit only in its bridge, and imports that only go downwards.

Every module of `llmlab` is read with `ast`, so every import counts: those at the top, those
inside functions and those under `TYPE_CHECKING`. A deferred import only hides a circle from
Python at start-up; the two modules still depend on each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import llmlab

PACKAGE = Path(llmlab.__file__).resolve().parent
# The bridge between the library and Streamlit: the only modules that may import it.
STREAMLIT_BRIDGE = ("llmlab.app", "llmlab.ui")


def module_names(root: Path) -> dict[str, Path]:
    """Every module under the package folder `root`, by dotted name (a package by its own).

    >>> module_names(PACKAGE)["llmlab.generation"].name
    '__init__.py'
    """
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, str]]:
    """(module, name) for each `from module import name`, ("module", "") for `import module`,
    relative imports made absolute, wherever the statement stands."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, ""


def _lazy_modules(tree: ast.Module) -> Iterator[str]:
    """The modules named in a lazy public API's table (`_LAZY = {name: (module, attribute)}`):
    `__getattr__` imports them on first use, so the package depends on them."""
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "_LAZY" and node.value is not None:
            for module, _ in ast.literal_eval(node.value).values():
                yield module


def import_graph(root: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The package's modules -> the package's modules each imports, and the outside top-level
    packages each imports (`streamlit`, `torch`...).

    `from llmlab import assets` names the module `llmlab.assets`, not the package's
    `__init__`; `from llmlab.generation import engine` likewise. `from llmlab import generate`
    (a name, not a module) and `import llmlab` name the `__init__`, which is the module `llmlab`.
    Python runs the parent packages' `__init__` files before a submodule, but each of them has
    run to its end by then, so they are no edge of the submodule's.
    """
    modules = module_names(root)
    inside: dict[str, set[str]] = {name: set() for name in modules}
    outside: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = list(_imported_names(tree, name, path.name == "__init__.py"))
        if path.name == "__init__.py":
            imported += [(lazy, "") for lazy in _lazy_modules(tree)]
        for base, member in imported:
            if base.split(".")[0] != root.name:
                outside[name].add(base.split(".")[0])
                continue
            target = f"{base}.{member}" if f"{base}.{member}" in modules else base
            while target not in modules:  # `import llmlab.x.y` of a missing file: its package
                target = target.rpartition(".")[0]
            if target != name:
                inside[name].add(target)
    return inside, outside


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, as a path that ends where it starts, or None.

    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    ['a', 'b', 'c', 'a']
    >>> find_cycle({"a": {"b"}, "b": set()}) is None
    True
    """
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        # Depth first, without recursion: `path` is the way down, `stack` each step's next ones.
        path, on_path = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:  # every way on from here is explored: step back up
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                stack.pop()
                continue
            if following in on_path:
                return [*path[path.index(following) :], following]
            if following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


def test_only_the_bridge_imports_streamlit():
    _, outside = import_graph()
    offenders = sorted(
        name
        for name, packages in outside.items()
        if "streamlit" in packages
        and not any(name == b or name.startswith(f"{b}.") for b in STREAMLIT_BRIDGE)
    )
    assert not offenders, f"these modules import streamlit outside llmlab/app/: {offenders}"


def test_imports_go_downwards_only():
    inside, _ = import_graph()
    cycle = find_cycle(inside)
    assert cycle is None, "an import circle: " + " -> ".join(cycle or [])


def test_the_graph_sees_every_kind_of_import():
    """Deferred imports, `from llmlab import <module>` and the lazy public API are all edges."""
    inside, outside = import_graph()
    assert "llmlab.assets" in inside["llmlab"]  # eager, in __init__
    assert "llmlab.generation.decoding" in inside["llmlab"]  # lazy, through __getattr__
    assert "llmlab.assets" in inside["llmlab.embeddings.sentences"]  # deferred `from llmlab import`
    assert "llmlab" not in inside["llmlab.embeddings.sentences"]
    assert "torch" in outside["llmlab.generation.engine"]


def test_a_circle_closed_by_a_deferred_import_is_found(tmp_path):
    """The checks themselves, on a small package with each kind of fault."""
    package = tmp_path / "llmlab"
    (package / "app").mkdir(parents=True)
    files = {
        "__init__.py": '_LAZY = {"run": ("llmlab.runner", "run")}\n',
        "runner.py": "from llmlab import helpers\n",
        "helpers.py": "def late():\n    from llmlab.runner import run\n",
        "shown.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import streamlit\n",
        "app/__init__.py": "import streamlit\n",
        "app/page.py": "from . import __name__ as name\nfrom ..helpers import late\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    inside, outside = import_graph(package)
    assert find_cycle(inside) == ["llmlab.runner", "llmlab.helpers", "llmlab.runner"]
    assert inside["llmlab"] == {"llmlab.runner"}
    assert inside["llmlab.app.page"] == {"llmlab.app", "llmlab.helpers"}
    assert {name for name, packages in outside.items() if "streamlit" in packages} == {
        "llmlab.shown", "llmlab.app"
    }  # fmt: skip
