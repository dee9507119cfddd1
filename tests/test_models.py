"""Loading the offline models: the converted cache, facts, a real forward pass, a real answer."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from llmlab import models


@pytest.mark.parametrize(
    "fixture, architecture, parameters, vocab",
    [
        ("gemma", "Gemma3ForCausalLM", 268_098_176, 262_144),
        ("smollm2", "LlamaForCausalLM", 134_515_008, 49_152),
    ],
)
def test_offline_model_forward_pass_scores_the_whole_vocabulary(
    request, fixture, architecture, parameters, vocab
):
    loaded = request.getfixturevalue(fixture)
    assert loaded.facts.architecture == architecture
    assert loaded.facts.parameters == parameters
    assert loaded.facts.vocab_size == vocab
    assert not loaded.model.training
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    logits = loaded.model(ids).logits
    assert logits.shape == (1, ids.shape[1], vocab)
    assert torch.isfinite(logits).all()
    assert not torch.is_grad_enabled() or not logits.requires_grad


def test_facts_say_which_model_is_base_and_which_is_chat(gemma, smollm2):
    assert (gemma.facts.kind, gemma.facts.has_chat_template) == ("base", False)
    assert (smollm2.facts.kind, smollm2.facts.has_chat_template) == ("chat", True)
    assert gemma.facts.source == smollm2.facts.source == "offline"
    assert smollm2.facts.context_length == 8192 and gemma.facts.context_length == 32768


def test_chat_model_answers_two_plus_two(smollm2):
    tokenizer = smollm2.tokenizer
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = smollm2.model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(output[0, ids.input_ids.shape[1] :], skip_special_tokens=True)
    assert "4" in answer


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m-instruct"])
def test_fast_tokenizer_loader_equals_transformers_own(name):
    folder = models.converted_dir(name)
    ours = models.load_tokenizer_dir(folder)
    reference = AutoTokenizer.from_pretrained(str(folder))
    for text in [
        "",
        "Hello world",
        "  spaces\tand\nlines",
        "emoji 🚀 and 한국어",
        "def f(x):\n    return x",
    ]:
        assert ours(text).input_ids == reference(text).input_ids
    assert ours.all_special_tokens == reference.all_special_tokens
    assert ours.chat_template == reference.chat_template
    assert (ours.bos_token_id, ours.eos_token_id) == (
        reference.bos_token_id,
        reference.eos_token_id,
    )


def test_conversion_is_cached_and_recorded():
    for name in ("gemma-3-270m", "smollm2-135m-instruct"):
        assert models.is_converted(name)
        folder = models.converted_dir(name)
        assert (folder / "model.safetensors").is_file()
        assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))


def test_unknown_model_and_dtype_are_value_errors():
    with pytest.raises(ValueError, match="model=.gpt 7. is not a known model"):
        models.load("gpt 7")
    with pytest.raises(ValueError, match="dtype='float8'"):
        models.load("smollm2-135m-instruct", dtype="float8")


def test_missing_pack_is_a_load_error_that_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    with pytest.raises(models.ModelLoadError, match="python -m llmlab assets fetch smollm2"):
        models.load("smollm2-135m-instruct")


def test_hub_model_without_the_hub_is_a_clear_load_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelLoadError, match="not reachable"):
        models.load("gpt2")


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_a_bfloat16_load_gives_transformers_own_weights(name):
    from transformers import AutoModelForCausalLM

    folder = models.convert(name)
    ours = models.load(name, dtype="bfloat16").model
    theirs = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert set(mine) == set(reference)
    assert all(mine[key].dtype == torch.bfloat16 for key in mine if mine[key].is_floating_point())
    assert all(torch.equal(mine[key], reference[key]) for key in reference)
    buffers = dict(theirs.named_buffers())
    assert {n: torch.equal(b, buffers[n]) for n, b in ours.named_buffers()} == dict.fromkeys(
        buffers, True
    )
    ids = torch.tensor([[1, 500, 600, 700]])
    assert torch.equal(ours(ids).logits, theirs(ids).logits)


_PEAK_OF_A_LOAD = """
import json, sys
from llmlab import memory, models
import transformers.models.llama.modeling_llama  # imported code is not the load's memory
before = memory.current_rss()
models.load("smollm2-135m-instruct", dtype="bfloat16")
print(json.dumps([before, memory.peak_rss()]))
"""


def test_a_bfloat16_load_never_holds_the_float32_file(tmp_path):
    """The float32 file is read a slice at a time: the peak is about the bfloat16 copy (269 MB),
    below the 538 MB float32 file that a memory-mapped read makes resident beside it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    models.convert("smollm2-135m-instruct")
    file_bytes = (models.converted_dir("smollm2-135m-instruct") / "model.safetensors").stat()
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_A_LOAD], capture_output=True, text=True, timeout=600,
        cwd=Path(__file__).resolve().parents[1], check=True,
    )  # fmt: skip
    before, peak = json.loads(result.stdout.strip().splitlines()[-1])
    assert peak - before < file_bytes.st_size, (before, peak)
