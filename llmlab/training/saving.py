"""Trained models on disk: safetensors weights, config and tokenizer files, never pickles.

A model is saved by name under `<LLMLAB_HOME>/trained/<name>/`, so it can be loaded later or
shared with a class on the same server. A name that could leave that folder is refused.

>>> check_name("my model 1")
'my model 1'
>>> check_name("../etc")
Traceback (most recent call last):
...
ValueError: name='../etc' is not allowed: use 1 to 64 letters, digits, spaces, '-', '_' or '.', starting with a letter or digit (no '/', no '..')
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from llmlab import assets

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
STAMP = "llmlab-trained.json"


def check_name(name: str) -> str:
    """The name if it is a safe folder name, else ValueError."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or name != name.strip():
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:77]}..."
        raise ValueError(
            f"name={shown!r} is not allowed: use 1 to 64 letters, digits, spaces, '-', '_' or "
            "'.', starting with a letter or digit (no '/', no '..')"
        )
    return name


def trained_dir(home: Path | None = None) -> Path:
    return (home or assets.cache_dir()) / "trained"


def _write(loaded: Any, folder: Path) -> None:
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    facts = {"title": loaded.facts.title, "parameters": loaded.facts.parameters}
    (folder / STAMP).write_text(json.dumps(facts, indent=2))
    for pickle in folder.glob("*.bin"):  # never leave a pickle behind
        pickle.unlink()


def save(loaded: Any, name: str, home: Path | None = None) -> Path:
    """Write `loaded` to `<LLMLAB_HOME>/trained/<name>/` (replacing an older one of that name)."""
    target = trained_dir(home) / check_name(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        _write(loaded, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def saved_names(home: Path | None = None) -> list[str]:
    folder = trained_dir(home)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / STAMP).is_file() and _NAME.match(p.name))


def load(name: str, home: Path | None = None) -> Any:
    """A saved model as a `LoadedModel` (eval mode, gradients off), read from safetensors."""
    from transformers import GPT2LMHeadModel

    from llmlab.models import LoadedModel, ModelFacts, load_tokenizer_dir

    folder = trained_dir(home) / check_name(name)
    if not (folder / STAMP).is_file():
        raise ValueError(
            f"name={name!r} is not a saved model; saved: {', '.join(saved_names(home)) or 'none'}"
        )
    tokenizer = load_tokenizer_dir(folder)
    model = GPT2LMHeadModel.from_pretrained(str(folder), use_safetensors=True).eval()
    model.requires_grad_(False)
    stamp = json.loads((folder / STAMP).read_text())
    facts = ModelFacts(
        name=f"saved-{name}",
        title=f"{name} ({stamp.get('title', 'tiny GPT')})",
        family="GPT-2 (tiny, trained here)",
        kind="base",
        source="trained",
        parameters=sum(p.numel() for p in model.parameters()),
        dtype="float32",
        context_length=int(model.config.n_positions),
        vocab_size=int(model.config.vocab_size),
        has_chat_template=False,
        architecture=type(model).__name__,
        location=str(folder),
    )
    return LoadedModel(facts.name, model, tokenizer, facts)


def zip_bytes(loaded: Any, name: str) -> bytes:
    """The files `save` writes, as a zip (in memory), inside a folder called `name`."""
    check_name(name)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as scratch:
        _write(loaded, Path(scratch))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(scratch).iterdir()):
                archive.write(path, f"{name}/{path.name}")
    return buffer.getvalue()
