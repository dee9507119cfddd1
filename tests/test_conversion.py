"""The streaming GGUF -> safetensors conversion gives exactly the float32 tensors (and config)
that transformers' own GGUF load gives, with one tensor in memory at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from llmlab import assets, conversion, models
from llmlab.registry import resolve_model

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def gguf_path():
    spec = resolve_model(MODEL)
    return assets.pack_path(spec.pack, spec.gguf_file)


def test_the_tensor_table_matches_gguf_reader(gguf_path):
    from gguf import GGUFReader

    blob = np.memmap(gguf_path, mode="r", dtype=np.uint8)
    architecture, table, data_start = conversion.read_tensor_table(blob)
    reader = GGUFReader(gguf_path)
    assert architecture == "llama"
    expected = [
        (t.name, tuple(reversed(t.shape.tolist())), int(t.tensor_type), t.data_offset)
        for t in reader.tensors
    ]
    assert [(n, s, g, data_start + o) for n, s, g, o in table] == expected
    assert conversion.float32_bytes(gguf_path) == 4 * sum(int(t.n_elements) for t in reader.tensors)


def test_slices_cover_every_row_once():
    data = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    small = conversion._slices(data, (10, 3))
    assert len(small) == 1 and small[0] is data
    old, conversion.SLICE_BYTES = conversion.SLICE_BYTES, 3 * 4 * 4  # four rows a slice
    try:
        parts = conversion._slices(data, (10, 3))
    finally:
        conversion.SLICE_BYTES = old
    assert [len(p) for p in parts] == [4, 4, 2]
    assert np.array_equal(np.concatenate(parts), data)


def test_every_tensor_equals_transformers_own_gguf_load(gguf_path, tmp_path, monkeypatch):
    """Converted into a fresh LLMLAB_HOME (the packs are shared, the user's cache untouched),
    with a slice size small enough that SmolLM2's embedding table goes through in slices."""
    from transformers import AutoModelForCausalLM

    (tmp_path / "packs").symlink_to(assets.cache_dir() / "packs")
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    monkeypatch.setattr(conversion, "SLICE_BYTES", 8 * 1024**2)
    folder = models.convert(MODEL)
    assert folder.parent.parent == tmp_path and models.is_converted(MODEL)

    reference = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype="float32"
    )
    expected = reference.state_dict()
    with safe_open(folder / "model.safetensors", "pt") as converted:
        names = set(converted.keys())
        assert converted.metadata() == {"format": "pt"}
        # Tied embeddings: lm_head is the embedding table, saved once, as save_pretrained does.
        assert names == set(expected) - {"lm_head.weight"}
        for name in sorted(names):
            tensor = converted.get_tensor(name)
            assert tensor.dtype == torch.float32, name
            assert torch.equal(tensor, expected[name]), name

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert "quantization_config" not in config
    for key, value in reference.config.to_diff_dict().items():
        if key not in ("quantization_config", "transformers_version", "_name_or_path"):
            assert config.get(key) == value, key
    loaded = models.load(MODEL)  # and it loads, with the same logits as the reference
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert torch.equal(loaded.model(ids).logits, reference(ids).logits)
