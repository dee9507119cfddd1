"""Switching a part of the model off, checked against a changed deep copy of the model.

Switching off head h of layer L must equal a copy whose attention output projection has that
head's input columns set to zero; a whole attention layer, a copy whose output projection is
zero; an MLP, a copy whose down projection is zero (GPT-2's Conv1D layers: rows, and the bias
too). The shared model must come out exactly as it went in.
"""

from __future__ import annotations

import copy
import hashlib
import threading

import pytest
import torch
from numerics import float32_softmax_tolerance

import llmlab
from llmlab import knockout
from llmlab.architecture import config_sizes
from llmlab.generation import knockouts
from llmlab.generation import next_token as nt
from llmlab.generation.decoding import generate

PROMPT = "The capital of France is"
TOLERANCE = 1e-5  # float32 logits


@pytest.fixture(scope="module")
def tiny_gpt():
    """A GPT-2 (the Training page's architecture), trained for three steps on this CPU."""
    return llmlab.train_tiny_gpt("to be or not to be, " * 30, preset="tiny", steps=3).model


@pytest.fixture(params=["smollm2", "gemma", "tiny_gpt"])
def loaded(request):
    return request.getfixturevalue(request.param)


def _zero_reference(copy_model, part, head_dim):
    """The part switched off by changing the copy's weights (the reference)."""
    where = knockout.layer_parts(copy_model, part[1])
    conv = type(where.projection).__name__ == "Conv1D"  # GPT-2: weight is (in, out)
    if part[0] == "head":
        columns = slice(part[2] * head_dim, (part[2] + 1) * head_dim)
        weight = where.projection.weight
        if conv:
            weight[columns, :] = 0
        else:
            weight[:, columns] = 0
        return
    module = where.projection if part[0] == "attention" else where.mlp
    projection = module if part[0] == "attention" else _down(module)
    projection.weight.zero_()
    if getattr(projection, "bias", None) is not None:
        projection.bias.zero_()


def _down(mlp):
    return mlp.down_proj if hasattr(mlp, "down_proj") else mlp.c_proj


def _weights_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), use_cache=False).logits[0, -1].float()


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_knock_outs_equal_a_changed_deep_copy(loaded):
    model = loaded.model
    sizes = config_sizes(model.config)
    prompt = PROMPT if "yours" not in loaded.name else "to be or"
    ids = nt.next_token_distribution(loaded, prompt).prompt_ids
    reference = copy.deepcopy(model)
    clean = _logits(model, ids)
    last = sizes.layers - 1
    parts = [("head", 0, 0), ("head", last, sizes.heads - 1), ("attention", 1), ("mlp", last)]
    for part in parts:
        saved = {k: v.clone() for k, v in reference.state_dict().items() if f".{part[1]}." in k}
        _zero_reference(reference, part, sizes.head_dim)
        expected = _logits(reference, ids)
        reference.load_state_dict(saved, strict=False)  # the copy back as it was
        got = nt.next_token_distribution(loaded, prompt, knock_out=[part]).logits
        assert (got - expected).abs().max().item() <= TOLERANCE, part
        # ... and the part mattered: the logits moved.
        assert (got - clean).abs().max().item() > 1e-3, part


def test_several_parts_at_once_equal_the_copy(smollm2):
    parts = [("head", 2, 1), ("head", 2, 4), ("mlp", 5), ("attention", 7)]
    reference = copy.deepcopy(smollm2.model)
    for part in parts:
        _zero_reference(reference, part, config_sizes(reference.config).head_dim)
    distribution = nt.next_token_distribution(smollm2, PROMPT, knock_out=parts)
    expected = _logits(reference, distribution.prompt_ids)
    assert (distribution.logits - expected).abs().max().item() <= TOLERANCE
    assert len(distribution.knock_out) == len(parts) and set(distribution.knock_out) == set(parts)


def test_the_shared_model_is_unchanged(smollm2):
    model = smollm2.model
    ids = smollm2.tokenizer(PROMPT)["input_ids"]
    weights, output, hooks = _weights_hash(model), _logits(model, ids), _hook_count(model)
    knockouts.knock_out_effect(smollm2, PROMPT, [("head", 3, 2), ("attention", 4), ("mlp", 5)])
    knockouts.head_sweep(smollm2, "Hi there")
    with pytest.raises(RuntimeError), knockout.switched_off(model, [("mlp", 0)]):
        raise RuntimeError("a failure inside the block still removes the hooks")
    assert _hook_count(model) == hooks
    assert _weights_hash(model) == weights
    assert torch.equal(_logits(model, ids), output)


def test_hooks_act_only_in_the_calling_thread(smollm2):
    ids = smollm2.tokenizer(PROMPT)["input_ids"]
    clean = _logits(smollm2.model, ids)
    seen = {}

    def other_thread():
        seen["logits"] = _logits(smollm2.model, ids)

    with knockout.switched_off(smollm2.model, [("mlp", 0), ("attention", 3)]):
        mine = _logits(smollm2.model, ids)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert torch.equal(seen["logits"], clean)
    assert (mine - clean).abs().max().item() > 1e-3


def test_generation_meanwhile_is_unchanged(smollm2):
    """A student generating while another runs a sweep gets the text they get alone."""
    alone = generate(smollm2, "Once upon a time", strategy="greedy", max_new_tokens=8).new_ids
    results = {}

    def student():
        results["ids"] = generate(
            smollm2, "Once upon a time", strategy="greedy", max_new_tokens=8
        ).new_ids

    thread = threading.Thread(target=student)
    thread.start()
    knockouts.head_sweep(smollm2, "Once upon a time there")
    thread.join()
    assert results["ids"] == alone


@pytest.mark.parametrize(
    "bad",
    [
        [("head", 99, 0)],
        [("head", 0, 9)],
        [("head", 0)],
        [("mlp", -1)],
        [("mlp", True)],
        [("attention", 1.5)],
        [("neuron", 1)],
        [("mlp", 1, 2)],
        ["mlp"],
        "mlp",
        5,
    ],
)
def test_invalid_parts_are_refused_by_name(smollm2, bad):
    with pytest.raises(ValueError, match=r"knock_out.*allowed: .*layer 0 to 29 and head 0 to 8"):
        nt.next_token_distribution(smollm2, PROMPT, knock_out=bad)


def test_lists_from_a_settings_file_are_parts(smollm2):
    from_json = nt.next_token_distribution(smollm2, PROMPT, knock_out=[["head", 1, 2]])
    assert from_json.knock_out == (("head", 1, 2),)


def test_effect_compares_before_and_after(smollm2):
    effect = knockouts.knock_out_effect(smollm2, PROMPT, [("mlp", 0)], top=5)
    before = nt.next_token_distribution(smollm2, PROMPT)
    after = nt.next_token_distribution(smollm2, PROMPT, knock_out=[("mlp", 0)])
    p, q = torch.softmax(before.logits.double(), -1), torch.softmax(after.logits.double(), -1)
    expected = float((p * (p.log() - q.log())).sum() / torch.log(torch.tensor(2.0)))
    # Both in float64 from the same float32 scores: they differ by float64 rounding alone, about
    # V·2**-53 ≈ 5e-12 of the normaliser; this KL is 14.5 bits, so 1e-7 relative is ample.
    assert effect.kl_bits > 3 and effect.kl_bits == pytest.approx(expected, rel=1e-7)
    assert effect.description == "the MLP of layer 0"
    top = torch.topk(before.probabilities, 5).indices.tolist()
    assert [c.token_id for c in effect.changes[:5]] == top
    assert [c.rank_before for c in effect.changes[:5]] == [1, 2, 3, 4, 5]
    # A float32 softmax over 49,152 scores against float64: the normaliser's rounding, bounded
    # term by term (numerics.float32_softmax_tolerance), 9e-4 before and 2.7e-3 after here.
    before_tolerance, after_tolerance = float32_softmax_tolerance(p), float32_softmax_tolerance(q)
    for change in effect.changes:
        assert change.before == pytest.approx(float(p[change.token_id]), rel=before_tolerance)
        assert change.after == pytest.approx(float(q[change.token_id]), rel=after_tolerance)
    with pytest.raises(ValueError, match="knock_out=\\[\\] switches nothing off"):
        knockouts.knock_out_effect(smollm2, PROMPT, [])


def test_sweep_equals_each_head_switched_off_alone(loaded):
    prompt = PROMPT if "yours" not in loaded.name else "to be or"
    fractions = []
    knockouts._sweeps.clear()
    sweep = knockouts.head_sweep(loaded, prompt, progress=fractions.append)
    sizes = config_sizes(loaded.model.config)
    assert (sweep.layers, sweep.heads) == (sizes.layers, sizes.heads)
    assert fractions and fractions[-1] == 1.0
    before = nt.next_token_distribution(loaded, prompt)
    for layer, head in [(0, 0), (sizes.layers // 2, 1), (sizes.layers - 1, sizes.heads - 1)]:
        after = nt.next_token_distribution(loaded, prompt, knock_out=[("head", layer, head)])
        alone = knockouts.kl_bits(before.logits, after.logits)
        assert sweep.kl_bits[layer][head] == pytest.approx(alone, rel=1e-3, abs=1e-5)
        top = sweep.top_token
        assert sweep.top_probability_after[layer][head] == pytest.approx(
            float(after.probabilities[top]), rel=1e-3, abs=1e-6
        )
    assert sweep.top_token == int(before.logits.argmax())
    ranked = sweep.ranked(5)
    assert [cell[2] for cell in ranked] == sorted(
        (v for r in sweep.kl_bits for v in r), reverse=True
    )[:5]


def test_sweep_in_several_passes_equals_one_pass(tiny_gpt):
    """A long prompt is swept a few layers at a time; the numbers are the same."""
    ids = tiny_gpt.tokenizer("to be or not to be")["input_ids"]
    clean, whole = knockout.sweep_heads(tiny_gpt.model, ids)
    fractions = []
    clean_split, split = knockout.sweep_heads(
        tiny_gpt.model, ids, fractions.append, row_tokens=len(ids) * 5
    )
    assert fractions == [0.25, 0.5, 0.75, 1.0]  # 1 + 4 heads = 5 rows: one layer per pass
    assert (split - whole).abs().max().item() < 1e-4
    assert (clean - clean_split).abs().max().item() < 1e-4


def test_a_long_prompt_is_refused_for_the_sweep(smollm2):
    with pytest.raises(ValueError, match="prompt is .* tokens; the sweep .* at most 256"):
        knockouts.head_sweep(smollm2, "word " * 400)
