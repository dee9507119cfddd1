"""Model names -> sources."""

from __future__ import annotations

import time

import pytest

from llmlab import registry


def test_offline_models_are_registered_with_their_roles():
    base, chat = registry.OFFLINE_PAIR
    assert registry.resolve_model(base).kind == "base"
    assert registry.resolve_model(chat).kind == "chat"
    assert registry.resolve_model(base).source == "offline"
    assert registry.resolve_model("gpt2").source == "hub"
    assert registry.resolve_model("Qwen/Qwen2.5-0.5B-Instruct").kind == "chat"


def test_a_typed_hub_id_is_accepted_as_a_hub_model():
    spec = registry.resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert (spec.source, spec.hub_id, spec.kind) == (
        "hub",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "chat",
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "no such model!",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "a/b/c",
        "x" * 10**6,
    ],
)
def test_unknown_names_raise_a_value_error_listing_the_available_ones(name):
    with pytest.raises(ValueError) as raised:
        registry.resolve_model(name)
    message = str(raised.value)
    assert message.startswith("model=")
    assert "gemma-3-270m" in message and "smollm2-135m-instruct" in message
    assert len(message) < 400  # a 1 MB name is shortened, not echoed


def test_hub_offline_is_honoured_without_touching_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    assert registry.hub_available() is False
    assert time.perf_counter() - started < 0.05


def test_default_pair_is_the_offline_pair_when_its_packs_are_here():
    assert registry.default_pair() == registry.OFFLINE_PAIR
    names = [spec.name for spec in registry.available_models(check_hub=False)]
    assert names == list(registry.OFFLINE_PAIR)


def test_every_hub_pair_is_a_base_and_a_chat_model_with_a_known_size():
    for base, chat in registry.HUB_PAIRS:
        assert (registry.MODELS[base].kind, registry.MODELS[chat].kind) == ("base", "chat")
        assert registry.MODELS[base].parameters and registry.MODELS[chat].parameters
    sizes = [registry.pair_bytes(pair) for pair in registry.HUB_PAIRS]
    assert sizes == sorted(sizes, reverse=True)  # largest first


@pytest.mark.parametrize(
    ("gigabytes", "chat"),
    [
        (24, "Qwen/Qwen2.5-0.5B-Instruct"),
        (4.95, "Qwen/Qwen2.5-0.5B-Instruct"),  # 2.47 GB of float32 weights: half of it
        (4.5, "HuggingFaceTB/SmolLM2-135M-Instruct"),
        (2.7, "HuggingFaceTB/SmolLM2-135M-Instruct"),
        (0.69, "HuggingFaceTB/SmolLM2-135M-Instruct"),  # nothing fits: the smallest
    ],
)
def test_the_hub_pair_fits_the_server_memory(gigabytes, chat):
    base, chosen = registry.hub_pair(int(gigabytes * 1024**3))
    assert (base, chosen) == ("gpt2", chat)
    if gigabytes >= 2.7:
        assert registry.pair_bytes((base, chosen)) <= gigabytes * 1024**3 / 2


def test_the_hub_pair_reads_the_server_budget_without_the_network(monkeypatch):
    from llmlab import memory

    monkeypatch.setattr(memory, "_shared", [])
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "2.7")
    monkeypatch.setattr(registry, "hub_available", lambda *args, **kwargs: True)
    monkeypatch.setattr(registry, "offline_ready", lambda spec: False)
    assert registry.default_pair() == ("gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct")
