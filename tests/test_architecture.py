"""Architecture library: exact GPT-2 totals, breakdowns that add up, summaries read from configs,
a traced forward pass, attention equal to transformers' own eager attention, embeddings."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from llmlab import architecture as arch
from llmlab import charts
from llmlab import embeddings as emb
from llmlab import forward_pass as fp
from llmlab import parameters as params

GPT2_TOTALS = {
    "small": 124_439_808,
    "medium": 354_823_168,
    "large": 774_030_080,
    "xl": 1_557_611_200,
}


@functools.cache
def gpt2(size: str):
    """One skeleton per size for the whole module (read only)."""
    return arch.gpt2_skeleton(size)


@pytest.fixture(scope="module", params=list(GPT2_TOTALS))
def skeleton(request):
    return request.param, gpt2(request.param)


def test_gpt2_skeleton_totals_are_exact(skeleton):
    size, model = skeleton
    assert arch.is_skeleton(model)
    assert arch.count_parameters(model) == GPT2_TOTALS[size]


def _check_breakdown(model):
    breakdown = params.parameter_breakdown(model)
    total = sum(p.numel() for p in model.parameters())
    assert breakdown.total == total
    assert sum(row.parameters for row in breakdown.rows) == total
    assert sum(row.share for row in breakdown.rows) == pytest.approx(1.0)
    # Every formula, evaluated with the config's sizes, gives its row's count.
    for row in breakdown.rows:
        if row.parameters:
            assert _evaluate(row.formula, breakdown.symbols) == row.parameters, row
    return breakdown


def _evaluate(formula: str, symbols: dict[str, int]) -> int:
    digits = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
    text = formula.replace(",", "").replace("·", "*").replace("dₕ", "D")
    names = {("D" if k == "dₕ" else k): v for k, v in symbols.items()}
    out = []
    for char in text:  # d² -> d**2
        out.append(f"**{char.translate(digits)}" if char in "⁰¹²³⁴⁵⁶⁷⁸⁹" else char)
    return eval("".join(out), {}, names)  # noqa: S307 - our own formula text


def test_breakdown_of_gpt2_sizes_adds_up_with_textbook_formulas(skeleton):
    size, model = skeleton
    breakdown = _check_breakdown(model)
    hidden, layers, _ = arch.GPT2_SIZES[size]
    attention = [r for r in breakdown.rows if r.component == "Attention"]
    assert len(attention) == layers
    assert attention[0].formula == "4·d² + 4·d"
    assert attention[0].parameters == 4 * hidden**2 + 4 * hidden
    mlp = next(r for r in breakdown.rows if r.component == "MLP")
    assert mlp.formula == "8·d² + 5·d"
    head = next(r for r in breakdown.rows if r.component == "LM head")
    assert head.parameters == 0 and "tied" in head.note
    assert next(r for r in breakdown.rows if r.component == "Position embedding").formula == "P·d"


@pytest.mark.parametrize("fixture", ["smollm2", "gemma"])
def test_breakdown_of_offline_models_adds_up(fixture, request):
    loaded = request.getfixturevalue(fixture)
    breakdown = _check_breakdown(loaded.model)
    assert breakdown.total == loaded.facts.parameters
    assert breakdown.tied
    components = breakdown.by_component()
    assert "Position embedding" not in components  # RoPE has no learned table
    assert (
        components["Token embedding"] == loaded.facts.vocab_size * loaded.model.config.hidden_size
    )


def test_treemap_boxes_add_up(skeleton):
    _, model = skeleton
    breakdown = params.parameter_breakdown(model)
    box = charts.parameter_treemap(breakdown.rows, breakdown.total).data[0]
    value = dict(zip(box.ids, box.values, strict=True))
    parents = dict(zip(box.ids, box.parents, strict=True))
    assert value["model"] == breakdown.total
    for node in box.ids:  # branchvalues="total": each box is exactly the sum of its children
        children = [value[c] for c in box.ids if parents[c] == node]
        assert not children or sum(children) == value[node], node
    for component, total in breakdown.by_component().items():
        group = next(r.group for r in breakdown.rows if r.component == component)
        assert value.get(f"{group}/{component}", 0) == total


def test_memory_by_dtype_for_gpt2_small():
    rows = {row.dtype: row for row in params.memory_by_dtype(GPT2_TOTALS["small"])}
    assert round(rows["fp32"].megabytes) == 498
    assert rows["bf16 / fp16"].bytes == 2 * GPT2_TOTALS["small"]
    assert rows["int4"].bytes == GPT2_TOTALS["small"] // 2
    with pytest.raises(ValueError, match="parameters=-1"):
        params.memory_by_dtype(-1)


def test_gpt2_size_must_be_known():
    with pytest.raises(ValueError, match="size='huge'.*small, medium, large, xl"):
        arch.gpt2_skeleton("huge")


def test_summary_gpt2():
    summary = arch.architecture_summary(gpt2("small"))
    assert (summary.normalization, summary.positions, summary.attention) == (
        "LayerNorm",
        "learned",
        "MHA",
    )
    assert (summary.mlp, summary.hidden_size, summary.layers, summary.heads) == (
        "GELU",
        768,
        12,
        12,
    )
    assert (summary.vocab_size, summary.context_length, summary.tied_embeddings) == (
        50257,
        1024,
        True,
    )


def test_summary_smollm2(smollm2):
    s = arch.architecture_summary(smollm2.model)
    assert (s.normalization, s.positions, s.attention, s.mlp) == (
        "RMSNorm",
        "RoPE",
        "GQA",
        "SwiGLU",
    )
    assert (s.heads, s.kv_heads, s.head_dim, s.tied_embeddings) == (9, 3, 64, True)
    assert (s.vocab_size, s.context_length, s.layers) == (49152, 8192, 30)


def test_summary_gemma(gemma):
    s = arch.architecture_summary(gemma.model)
    assert s.normalization == "RMSNorm (scale 1 + w)"
    assert s.positions.startswith("RoPE") and s.sliding_window == 512
    assert s.layer_pattern == "15 local (sliding window 512) + 3 global"  # 5 local : 1 global
    assert (s.attention, s.heads, s.kv_heads, s.head_dim) == ("MQA", 4, 1, 256)
    assert (s.mlp, s.activation) == ("GeGLU", "gelu_pytorch_tanh")
    assert (s.vocab_size, s.context_length, s.tied_embeddings) == (262144, 32768, True)
    # KV cache: 2 x 18 layers x 1 kv head x 256 values per token, 2 bytes each.
    assert arch.kv_cache_bytes(s, 1000) == 2 * 18 * 1 * 256 * 1000 * 2


def test_module_tree_counts_tied_weights_once(smollm2):
    tree = arch.module_tree(smollm2.model)
    assert tree.parameters == smollm2.facts.parameters
    layers = tree.children[0].children[1]
    assert layers.name == "layers" and layers.children[0].repeat == 30
    assert layers.children[0].name == "0-29"
    html = arch.module_outline_html(tree)
    assert html.count("<details") == html.count("</details>") and "30 × LlamaDecoderLayer" in html


AWKWARD = ["Hi", "🙂 emoji", "안녕하세요 세계", "def f(x):\n    return x * 2", "word " * 40]


@pytest.mark.parametrize("text", AWKWARD, ids=["short", "emoji", "korean", "code", "long"])
def test_prompt_labels_every_token(smollm2, text):
    prompt = fp.prepare_prompt(smollm2.tokenizer, text, 8192)
    assert prompt.ids == smollm2.tokenizer(text)["input_ids"] and not prompt.truncated
    assert len(prompt.tokens) == len(prompt.ids) and all(prompt.tokens)


# Emoji, Korean, code and a repeated word in one short prompt: every test below reuses its trace.
TRACED = "🙂 안녕 def f(x): return x x x"


@pytest.fixture(scope="module")
def traced(smollm2):
    """The trace of TRACED, and the logits of a plain forward pass as the reference."""
    trace = fp.forward_trace(smollm2.model, smollm2.tokenizer, TRACED)
    logits = smollm2.model(input_ids=torch.tensor([trace.prompt.ids])).logits
    return trace, logits


def test_forward_trace_shapes_follow_the_config(smollm2, traced):
    trace, _ = traced
    config = smollm2.model.config
    length = len(smollm2.tokenizer(TRACED)["input_ids"])
    flow = trace.flow()
    assert [s.name for s in flow][0] == "model.embed_tokens"
    assert len([s for s in flow if ".layers." in s.name]) == config.num_hidden_layers
    assert flow[-1].name == "lm_head" and flow[-1].shape == (1, length, config.vocab_size)
    assert all(s.shape == (1, length, config.hidden_size) for s in flow[:-1])
    assert [s.order for s in trace.steps] == sorted(s.order for s in trace.steps)


def test_forward_trace_path_from_ids_to_logits(smollm2, traced):
    trace, _ = traced
    length, config = len(trace.prompt.ids), smollm2.model.config
    assert trace.path() == [
        ("token ids", (1, length)),
        ("embedding", (1, length, config.hidden_size)),
        ("30 blocks", (1, length, config.hidden_size)),
        ("final norm", (1, length, config.hidden_size)),
        ("LM head", (1, length, config.vocab_size)),
    ]


def test_forward_trace_records_the_models_own_logits(smollm2, traced):
    trace, logits = traced
    head = trace.flow()[-1]
    assert head.mean == pytest.approx(logits.mean().item(), rel=1e-4, abs=1e-5)
    assert head.std == pytest.approx(logits.std().item(), rel=1e-4)
    assert head.max_abs == pytest.approx(logits.abs().max().item(), rel=1e-4)
    best = int(logits[0, -1].argmax())
    assert trace.next_tokens[0][0] == fp.token_label(smollm2.tokenizer, best)
    probabilities = torch.softmax(logits[0, -1], dim=-1)
    assert trace.next_tokens[0][1] == pytest.approx(probabilities[best].item(), rel=1e-4)


def test_forward_trace_gemma_and_cut(gemma):
    trace = fp.forward_trace(gemma.model, gemma.tokenizer, "one two three four five", max_tokens=3)
    assert trace.prompt.truncated and trace.prompt.ids[0] == gemma.tokenizer.bos_token_id
    assert trace.flow()[-1].shape == (1, 3, 262144)


def test_prompt_longer_than_context_is_cut(smollm2):
    text = "tok " * 9000  # > 8,192 tokens
    prompt = fp.prepare_prompt(smollm2.tokenizer, text, fp.context_length(smollm2.model))
    assert prompt.truncated and len(prompt.ids) == 8192 and prompt.original_length > 8192


def test_empty_prompt_and_skeleton_are_refused(smollm2):
    with pytest.raises(ValueError, match="text=''"):
        fp.forward_trace(smollm2.model, smollm2.tokenizer, "")
    with pytest.raises(ValueError, match="skeleton"):
        fp.forward_trace(gpt2("small"), smollm2.tokenizer, "Hi")


ATTENDED = "The cat sat on the mat because it"


def _eager_attentions(loaded):
    """Reference: transformers' own eager attention with output_attentions, every layer."""
    ids = loaded.tokenizer(ATTENDED)["input_ids"]
    loaded.model.set_attn_implementation("eager")
    try:
        return loaded.model(input_ids=torch.tensor([ids]), output_attentions=True).attentions
    finally:
        loaded.model.set_attn_implementation("sdpa")


@pytest.fixture(scope="module")
def eager_attentions(smollm2, gemma):
    return {"smollm2": _eager_attentions(smollm2), "gemma": _eager_attentions(gemma)}


@pytest.mark.parametrize(
    "fixture, layer", [("smollm2", 0), ("smollm2", 29), ("gemma", 0), ("gemma", 17)]
)
def test_attention_maps_equal_eager_attention(fixture, layer, request, eager_attentions):
    loaded = request.getfixturevalue(fixture)
    hooks = sum(len(m._forward_hooks) for m in loaded.model.modules())
    maps = fp.attention_maps(loaded.model, loaded.tokenizer, ATTENDED, layer)
    heads = loaded.model.config.num_attention_heads
    length = len(maps.prompt.ids)
    assert maps.weights.shape == (heads, length, length)
    assert maps.layer_kind.startswith("local") == (fixture == "gemma" and layer == 0)
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(maps.weights, k=1) == 0)  # causal: nothing from the future
    # The shared model is untouched: same attention code, no hook left behind.
    assert loaded.model.config._attn_implementation == "sdpa"
    assert sum(len(m._forward_hooks) for m in loaded.model.modules()) == hooks
    reference = eager_attentions[fixture][layer][0].numpy()
    np.testing.assert_allclose(maps.weights, reference, atol=1e-5)


def test_sliding_window_mask():
    mask = fp.causal_mask(5, 2, torch.float32)[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ]


def test_attention_layer_out_of_range(smollm2):
    with pytest.raises(ValueError, match="layer=30 .*0 to 29"):
        fp.attention_maps(smollm2.model, smollm2.tokenizer, "Hi", 30)


def test_linear_layer_matches_torch():
    weights, inputs, bias = [[1.5, -2.0, 0.0], [0.25, 1.0, 3.0]], [2.0, 1.0, -1.0], [0.5, -1.0]
    example = fp.linear_layer(weights, inputs, bias)
    reference = torch.nn.functional.linear(
        torch.tensor(inputs), torch.tensor(weights), torch.tensor(bias)
    )
    assert example.outputs == pytest.approx(reference.tolist())
    assert example.steps[0] == "y0 = 1.5·2 + -2·1 + 0·-1 + 0.5 = 1.5"
    with pytest.raises(ValueError, match="inputs=.*3 numbers"):
        fp.linear_layer(weights, [1.0], bias)
    with pytest.raises(ValueError, match="bias=.*2 numbers"):
        fp.linear_layer(weights, inputs, [1.0])


@pytest.mark.parametrize("fixture", ["smollm2", "gemma"])
def test_static_vs_contextual_bank(fixture, request):
    loaded = request.getfixturevalue(fixture)
    sentences = ["I sat on the river bank", "I opened a bank account"]
    contrast = emb.embedding_contrast(loaded.model, loaded.tokenizer, sentences, "bank")
    assert contrast.token_pieces[0] == contrast.token_pieces[1]
    np.testing.assert_array_equal(contrast.static[0], contrast.static[1])
    assert contrast.static_similarity[0, 1] == pytest.approx(1.0, abs=1e-5)
    assert contrast.contextual_similarity[0, 1] < 0.99
    table = loaded.model.get_input_embeddings().weight
    token = loaded.tokenizer(" bank", add_special_tokens=False)["input_ids"]
    np.testing.assert_array_equal(contrast.static[0], table[token].float().mean(0).numpy())


def test_embedding_errors_and_projection(smollm2):
    with pytest.raises(ValueError, match="word='boat' does not occur"):
        emb.embedding_contrast(smollm2.model, smollm2.tokenizer, ["a bank", "a river"], "boat")
    sentences = ["I sat on the river bank", "I opened a bank account", "The river was cold"]
    points, explained = emb.embedding_projection(
        smollm2.model, smollm2.tokenizer, sentences, ["bank", "river"], kind="static"
    )
    assert len(points) == 4 and 0 < explained.sum() <= 1 + 1e-9
    banks = [(p.x, p.y) for p in points if p.word == "bank"]
    assert banks[0] == pytest.approx(banks[1], abs=1e-4)  # static: the same spot


def test_pca_matches_numpy_reference():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(12, 6)) * np.array([5, 3, 1, 1, 1, 1])
    coordinates, explained = emb.pca_2d(data)
    centred = data - data.mean(0)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1]
    np.testing.assert_allclose(np.var(coordinates, axis=0, ddof=1), eigenvalues[:2], rtol=1e-9)
    np.testing.assert_allclose(explained, eigenvalues[:2] / eigenvalues.sum(), rtol=1e-9)
