"""Hub models on a shared server: typed ids can be switched off, and a model's size is read from
the Hub's metadata and refused above the limit before anything is downloaded.

The metadata are answers of `/api/models/{id}?blobs=true` saved under `tests/data/hub/` and read
through `huggingface_hub.ModelInfo`, the object `HfApi().model_info` returns. No network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import page_from_link
from huggingface_hub.hf_api import ModelInfo

from llmlab import hub_limits, models, registry, ui
from llmlab.hub_limits import HubModelRefused, check_hub_model, hub_size

HUB = Path(__file__).parent / "data" / "hub"
LIMIT_WORDS = ("1.5 billion", "LLMLAB_MAX_HUB_PARAMS")


def answer(name: str) -> dict:
    return json.loads((HUB / f"{name}.json").read_text())


def info(name: str) -> ModelInfo:
    return ModelInfo(**answer(name))


def safetensors_bytes(data: dict) -> int:
    return sum(s["size"] for s in data["siblings"] if s["rfilename"].endswith(".safetensors"))


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    monkeypatch.delenv("LLMLAB_MAX_HUB_PARAMS", raising=False)
    monkeypatch.delenv("LLMLAB_ALLOW_HUB_IDS", raising=False)


# --- the decision -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [info, answer], ids=["ModelInfo", "JSON"])
def test_a_half_billion_model_is_allowed_with_the_hubs_own_count(shape):
    size = check_hub_model("Qwen/Qwen2.5-0.5B", shape("qwen2.5-0.5b"))
    data = answer("qwen2.5-0.5b")
    assert size.parameters == data["safetensors"]["total"] == 494_032_768
    assert not size.estimated
    assert size.safetensors_files == 1
    assert size.safetensors_bytes == safetensors_bytes(data)


@pytest.mark.parametrize("shape", [info, answer], ids=["ModelInfo", "JSON"])
def test_a_72_billion_model_is_refused_naming_its_size_and_the_limit(shape):
    with pytest.raises(HubModelRefused) as refused:
        check_hub_model("Qwen/Qwen2.5-72B-Instruct", shape("qwen2.5-72b-instruct"))
    message = str(refused.value)
    assert "72.7 billion parameters" in message
    assert all(words in message for words in LIMIT_WORDS)
    assert isinstance(refused.value, ValueError)


def test_sharded_safetensors_are_added_up():
    data = answer("qwen2.5-72b-instruct")
    size = hub_size(info("qwen2.5-72b-instruct"))
    shards = [s for s in data["siblings"] if s["rfilename"].endswith(".safetensors")]
    assert size.safetensors_files == len(shards) == 37
    assert size.safetensors_bytes == safetensors_bytes(data) > 145e9


def test_only_file_sizes_estimate_two_bytes_per_parameter():
    data = answer("mistral-7b-v0.1-sizes-only")
    assert "safetensors" not in data  # the Hub gave no count: only the files' sizes
    size = hub_size(ModelInfo(**data))
    assert size.estimated
    assert size.parameters == safetensors_bytes(data) // 2  # the .bin copies are not counted
    assert "PyTorch .bin" in size.other_weights
    with pytest.raises(HubModelRefused, match=r"about 7\.2 billion parameters \(from its 14\.5 GB"):
        check_hub_model("mistralai/Mistral-7B-v0.1", ModelInfo(**data))


def test_the_per_dtype_counts_stand_in_for_a_missing_total():
    data = answer("qwen2.5-72b-instruct")
    data["safetensors"] = {"parameters": {"BF16": 70_000_000_000, "F32": 2_706_203_648}}
    assert hub_size(data).parameters == 72_706_203_648


def test_a_gguf_only_repository_is_refused_before_any_download():
    data = answer("qwen2.5-0.5b-instruct-gguf")
    with pytest.raises(HubModelRefused, match="no safetensors weights \\(GGUF only\\)"):
        check_hub_model("Qwen/Qwen2.5-0.5B-Instruct-GGUF", ModelInfo(**data))


@pytest.mark.parametrize(
    "change",
    ["no metadata at all", "names without sizes", "no file list"],
)
def test_a_model_whose_size_the_hub_does_not_give_is_refused(change):
    data = answer("qwen2.5-72b-instruct")
    del data["safetensors"]
    if change == "no metadata at all":
        data = {"id": data["id"]}
    elif change == "names without sizes":  # the answer without `?blobs=true`
        data["siblings"] = [{"rfilename": s["rfilename"]} for s in data["siblings"]]
    else:
        del data["siblings"]
    with pytest.raises(HubModelRefused, match="does not say how large") as refused:
        check_hub_model(data["id"], ModelInfo(**data))
    assert all(words in str(refused.value) for words in LIMIT_WORDS)


def test_the_limit_comes_from_the_environment():
    big, small = info("qwen2.5-72b-instruct"), info("qwen2.5-0.5b")
    assert check_hub_model("big", big, {"LLMLAB_MAX_HUB_PARAMS": "1e11"}).parameters > 7e10
    with pytest.raises(HubModelRefused, match="up to 0.4 billion"):
        check_hub_model("small", small, {"LLMLAB_MAX_HUB_PARAMS": "400000000"})
    exact = {"LLMLAB_MAX_HUB_PARAMS": "494032768"}
    assert check_hub_model("small", small, exact).parameters == 494_032_768  # at the limit: fine
    with pytest.raises(HubModelRefused):
        check_hub_model("small", small, {"LLMLAB_MAX_HUB_PARAMS": "494032767"})


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan", "inf"])
def test_a_bad_limit_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match=f"LLMLAB_MAX_HUB_PARAMS={value!r} is not allowed"):
        hub_limits.max_hub_params({"LLMLAB_MAX_HUB_PARAMS": value})


@pytest.mark.parametrize(
    ("value", "allowed"), [("", True), ("1", True), ("0", False), ("no", False)]
)
def test_allow_hub_ids_reads_zero_and_one(value, allowed):
    assert hub_limits.hub_ids_allowed({"LLMLAB_ALLOW_HUB_IDS": value}) is allowed


def test_allow_hub_ids_refuses_a_value_it_does_not_know():
    with pytest.raises(ValueError, match="LLMLAB_ALLOW_HUB_IDS='maybe' is not allowed"):
        hub_limits.hub_ids_allowed({"LLMLAB_ALLOW_HUB_IDS": "maybe"})


# --- the loading path -------------------------------------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch):
    """The Hub answers `model_info` from the saved fixtures; any download fails the test."""
    asked: list[tuple[str, dict]] = []
    answers = {
        "Qwen/Qwen2.5-72B-Instruct": "qwen2.5-72b-instruct",
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF": "qwen2.5-0.5b-instruct-gguf",
        "mistralai/Mistral-7B-v0.1": "mistral-7b-v0.1-sizes-only",
        "Qwen/Qwen2.5-0.5B": "qwen2.5-0.5b",
    }

    def model_info(self, hub_id, **options):
        asked.append((hub_id, options))
        return info(answers[hub_id])

    def no_download(*args, **kwargs):
        raise AssertionError("a download started")

    monkeypatch.setattr(models, "hub_available", lambda: True)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", model_info)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", no_download)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_download)
    return asked


@pytest.mark.parametrize(
    ("hub_id", "says"),
    [
        ("Qwen/Qwen2.5-72B-Instruct", "72.7 billion"),
        ("mistralai/Mistral-7B-v0.1", "about 7.2 billion"),
        ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "no safetensors weights"),
    ],
)
def test_loading_refuses_before_anything_is_downloaded(fake_hub, hub_id, says):
    with pytest.raises(HubModelRefused, match=says):
        models.load(hub_id)
    assert fake_hub == [(hub_id, {"timeout": models.HUB_TIMEOUT, "files_metadata": True})]


def test_a_model_under_the_limit_goes_on_to_the_download(fake_hub):
    with pytest.raises(models.ModelLoadError, match="a download started"):
        models.load("Qwen/Qwen2.5-0.5B")  # the check passed; the (blocked) download began


def test_the_page_shows_the_refusal_as_a_message(fake_hub, monkeypatch):
    monkeypatch.setattr(registry, "hub_available", lambda: True)
    params = {"model": ui.OTHER_HUB_ID, "hub_id": "Qwen/Qwen2.5-72B-Instruct"}
    at = page_from_link("next_token", params)
    assert not at.exception
    assert any("72.7 billion" in e.value and "LLMLAB_MAX_HUB_PARAMS" in e.value for e in at.error)


# --- LLMLAB_ALLOW_HUB_IDS=0 -------------------------------------------------------------------


def test_no_typed_hub_ids_keeps_the_registered_models_and_refuses_others(monkeypatch):
    monkeypatch.setenv("LLMLAB_ALLOW_HUB_IDS", "0")
    for name in registry.MODELS:
        assert registry.resolve_model(name).name == name
    assert registry.resolve_model("openai-community/gpt2").name == "gpt2"  # a listed Hub id
    with pytest.raises(HubModelRefused, match="LLMLAB_ALLOW_HUB_IDS=0") as refused:
        registry.resolve_model("Qwen/Qwen2.5-72B-Instruct")
    assert "available: gemma-3-270m" in str(refused.value)


def test_no_typed_hub_ids_refuses_them_in_the_api(fake_hub, monkeypatch):
    monkeypatch.setenv("LLMLAB_ALLOW_HUB_IDS", "0")
    with pytest.raises(HubModelRefused, match="LLMLAB_ALLOW_HUB_IDS=0"):
        models.load("Qwen/Qwen2.5-0.5B")
    assert fake_hub == []  # not even asked


@pytest.mark.parametrize(("value", "offered"), [("1", True), ("0", False), ("maybe", False)])
def test_pickers_offer_other_hub_id_only_when_allowed(monkeypatch, value, offered):
    monkeypatch.setattr(registry, "hub_available", lambda: True)
    monkeypatch.setenv("LLMLAB_ALLOW_HUB_IDS", value)
    assert (ui.OTHER_HUB_ID in ui.picker_options()) is offered
    assert (ui.OTHER_HUB_ID in ui.picker_options(("chat",))) is offered


@pytest.mark.parametrize("page", ["next_token", "decoding"])
def test_a_link_with_a_typed_hub_id_is_refused_with_a_notice(monkeypatch, page):
    monkeypatch.setattr(registry, "hub_available", lambda: True)
    monkeypatch.setenv("LLMLAB_ALLOW_HUB_IDS", "0")
    params = {"model": ui.OTHER_HUB_ID, "hub_id": "Qwen/Qwen2.5-72B-Instruct"}
    at = page_from_link(page, params)
    assert not at.exception
    assert any(w.value.startswith("**model** in the link") for w in at.warning)
    boxes = [s for s in at.selectbox if ui.OTHER_HUB_ID in s.options]
    assert boxes == []


def test_no_typed_hub_ids_refuses_a_hub_tokenizer_too(monkeypatch):
    from llmlab.tokenization import zoo

    monkeypatch.setenv("LLMLAB_ALLOW_HUB_IDS", "0")
    monkeypatch.setattr(registry, "hub_available", lambda: True)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", pytest.fail)
    with pytest.raises(HubModelRefused, match="LLMLAB_ALLOW_HUB_IDS=0"):
        zoo.load("Qwen/Qwen2.5-72B-Instruct")
