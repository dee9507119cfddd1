"""What a deploy from `requirements.txt` alone relies on (Streamlit Community Cloud, or any
fresh machine), checked on the file itself and on the environment it built here.

Community Cloud installs `requirements.txt` with uv (falling back to pip) on Linux x86_64, for
the Python chosen when deploying (3.12 unless changed). PyPI's Linux torch wheel is the CUDA
build, which pulls several GB of nvidia-* wheels, so for the Cloud's Pythons torch comes as
PyTorch's CPU wheel by direct URL. Index options are left out on purpose: an index that does not
answer costs pip five retries for every package (a 90-second install took over 15 minutes).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"
TORCH = Version("2.13.0")
CLOUD_PYTHONS = ("3.12", "3.13")  # 3.12: Community Cloud's default
LOCAL_PYTHON = "3.11"  # `make setup` (pip finds the CPU wheel through its find-links)
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
TEST_ONLY = {"pytest", "ruff", "playwright"}  # never imported by the app
SHA256 = re.compile(r"^sha256=[0-9a-f]{64}$")


def read_requirements() -> list[Requirement]:
    """Every requirement line, parsed; comments, blank lines and options skipped."""
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith(("#", "-"))]


def applies(
    requirement: Requirement, python: str, system: str = "Linux", machine: str = "x86_64"
) -> bool:
    if requirement.marker is None:
        return True
    environment = {"python_version": python, "python_full_version": f"{python}.0"}
    environment |= {
        "sys_platform": {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}[system],
        "platform_system": system,
        "platform_machine": machine,
    }
    return requirement.marker.evaluate(environment)


def torch_for(python: str, system: str = "Linux", machine: str = "x86_64") -> list[Requirement]:
    return [
        r for r in read_requirements() if r.name == "torch" and applies(r, python, system, machine)
    ]


def wheel_of(requirement: Requirement):
    """(name, version, tags) of a direct-URL wheel requirement."""
    name = unquote(urlsplit(requirement.url).path.rsplit("/", 1)[-1])
    return parse_wheel_filename(name)


# --- the file -------------------------------------------------------------------------------


def test_every_line_is_a_requirement_pinned_to_one_build():
    text = REQUIREMENTS.read_text()
    options = [line for line in text.splitlines() if line.strip().startswith("-")]
    assert not options, f"index or pip options in requirements.txt: {options}"
    for requirement in read_requirements():
        if requirement.url:
            assert requirement.url.startswith("https://"), requirement
            assert SHA256.match(urlsplit(requirement.url).fragment), f"no sha256: {requirement}"
        else:
            (spec,) = requirement.specifier  # exactly one specifier...
            assert spec.operator == "==" and "*" not in spec.version, requirement  # ...an exact pin


def test_each_package_is_listed_once_for_any_python():
    for python in PYTHONS:
        names = [r.name for r in read_requirements() if applies(r, python)]
        duplicates = {name for name in names if names.count(name) > 1}
        assert not duplicates, f"Python {python}: listed twice: {duplicates}"


@pytest.mark.parametrize("python", PYTHONS)
def test_torch_is_2_13_0_for_every_python(python):
    (torch,) = torch_for(python)
    if torch.url:
        assert wheel_of(torch)[1].public == str(TORCH)
    else:
        assert torch.specifier.contains(TORCH) and str(torch.specifier) == f"=={TORCH}"


@pytest.mark.parametrize("python", CLOUD_PYTHONS)
def test_the_cloud_python_gets_the_cpu_wheel_built_for_it(python):
    (torch,) = torch_for(python)
    assert torch.url, f"Python {python} would take PyPI's CUDA build of torch"
    assert urlsplit(torch.url).netloc == "download.pytorch.org"
    assert urlsplit(torch.url).path.startswith("/whl/cpu/")
    name, version, _build, tags = wheel_of(torch)
    assert (name, version) == ("torch", Version(f"{TORCH}+cpu"))
    interpreter = "cp" + python.replace(".", "")
    assert {tag.interpreter for tag in tags} == {interpreter}
    assert {tag.abi for tag in tags} == {interpreter}
    # Community Cloud is Debian 11 (glibc 2.31) on x86_64: a manylinux wheel up to glibc 2.31.
    for tag in tags:
        match = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag.platform)
        assert match and int(match.group(1)) <= 31, tag


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(
    ("system", "machine"),
    [("Darwin", "arm64"), ("Darwin", "x86_64"), ("Windows", "AMD64"), ("Linux", "aarch64")],
)
def test_a_student_laptop_gets_the_plain_pin(python, system, machine):
    """The CPU wheel by URL is built for Linux on x86_64 only; a Mac, a Windows laptop or an
    ARM board takes PyPI's torch, which is the CPU build there."""
    (torch,) = torch_for(python, system, machine)
    assert torch.url is None and str(torch.specifier) == f"=={TORCH}"


def test_the_local_python_keeps_the_plain_pin():
    """`make setup` runs Python 3.11; pip's find-links supplies the CPU wheel for `==2.13.0`
    (a URL here would bypass it and need download.pytorch.org)."""
    (torch,) = torch_for(LOCAL_PYTHON)
    assert torch.url is None and str(torch.specifier) == f"=={TORCH}"


def test_a_requirement_for_another_python_is_ignored_here():
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    skipped = [r for r in read_requirements() if not applies(r, here)]
    assert skipped and all(r.name == "torch" for r in skipped)


# --- the environment it built ---------------------------------------------------------------


def test_installed_versions_are_the_pinned_ones():
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for requirement in read_requirements():
        if not applies(requirement, here):
            continue
        installed = Version(metadata.version(requirement.name))
        if requirement.url:
            assert installed == wheel_of(requirement)[1], requirement.name
        else:
            assert requirement.specifier.contains(installed.public), (requirement, installed)


def test_nothing_installed_was_compiled_on_this_machine():
    """Every installed distribution came as a wheel built for any Linux (manylinux, musllinux)
    or pure Python; a bare `linux_x86_64` tag means it was compiled here from source, which a
    deploy would have to do too."""
    compiled = []
    for dist in metadata.distributions():
        wheel = dist.read_text("WHEEL") or ""
        tags = [
            line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")
        ]
        if any(tag.endswith("-linux_x86_64") for tag in tags):
            compiled.append((dist.metadata["Name"], tags))
    assert not compiled


def _imported_modules() -> set[str]:
    files = [*(ROOT / "llmlab").rglob("*.py"), *(ROOT / "app_pages").glob("*.py")]
    files.append(ROOT / "streamlit_app.py")
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "llmlab"}


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` pull in here (their requirements, recursively)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    seen: set[str] = set()
    todo = [canonicalize_name(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker and "extra" in str(requirement.marker):
                continue
            if applies(requirement, here):
                try:
                    metadata.distribution(requirement.name)
                except metadata.PackageNotFoundError:
                    continue
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_the_app_imports_only_what_requirements_install():
    modules = _imported_modules()
    assert {"streamlit", "torch", "transformers"} <= modules  # the scan sees the app's imports
    providers = metadata.packages_distributions()
    runtime = {r.name for r in read_requirements()} - TEST_ONLY
    installed_by_requirements = _closure(runtime)
    for module in sorted(modules):
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        assert distributions, f"{module} is imported but no installed distribution provides it"
        assert distributions & installed_by_requirements, (
            f"{module} ({distributions}) is not installed by requirements.txt's runtime pins"
        )
        assert not distributions & {canonicalize_name(n) for n in TEST_ONLY}, module
