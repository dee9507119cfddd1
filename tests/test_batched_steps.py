"""The engine's work between forward passes, done for many rows at once, equals each row alone.

Rows with the same settings are filtered, normalised, ranked and chosen together; each row must
get exactly (not within a tolerance) the record, token and generator state it gets alone. Here
both sides read the very same logits, real ones from both models, so no float rounding of a
larger forward pass is involved: any difference is a fault of the batched path.
"""

from __future__ import annotations

import concurrent.futures
import math

import pytest
import torch

from llmlab.generation import decoding, sampling, steppers
from llmlab.generation import engine as engine_module
from llmlab.generation.batch import Batch
from llmlab.generation.engine import Engine, Request
from llmlab.generation.filters import TopP

# One step of the engine holds all of these: a greedy group of three (one with its own
# no-repeat filter, which runs row by row before the shared work), a top-p group of three (one
# with a repetition penalty), top-k twice with different record sizes (so two groups), other
# strategies alone in their group, and a beam search, which always chooses alone.
MIXED = [
    ("Once upon a time", {"strategy": "greedy"}),
    ("The capital of France is", {"strategy": "greedy"}),
    ("Water boils at", {"strategy": "greedy", "no_repeat_ngram_size": 2}),
    ("Hi", {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "seed": 3}),
    ("안녕하세요 🙂 오늘", {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "seed": 4}),
    (
        "def add(a, b):\n    return",
        {
            "strategy": "top_p",
            "top_p": 0.9,
            "temperature": 0.8,
            "seed": 5,
            "repetition_penalty": 1.3,
        },
    ),  # fmt: skip
    ("Tell me a story", {"strategy": "top_k", "top_k": 20, "seed": 11}),
    ("Tell me a story", {"strategy": "top_k", "top_k": 20, "seed": 12, "top_candidates": 3}),
    ("Photosynthesis is", {"strategy": "min_p", "min_p": 0.05, "seed": 5, "temperature": 1.2}),
    ("My favourite food is", {"strategy": "sample", "seed": 9}),
    ("The three primary colours are", {"strategy": "beam", "num_beams": 2}),
]
STEPS = 6


@pytest.fixture(params=["smollm2", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def stepper_for(loaded, prompt: str, settings: dict):
    settings = dict(settings)
    strategy = settings.pop("strategy")
    valid = decoding.validate_settings(strategy, max_new_tokens=STEPS, **settings)
    _, ids, budget, _ = decoding.prepare_prompt(loaded, prompt, STEPS)
    return decoding.new_stepper(loaded, ids, budget, strategy, valid, stop_at_eos=False)


@pytest.mark.parametrize("cores", [None, 4], ids=["one thread", "shares on helpers"])
def test_mixed_settings_in_one_batch_give_each_request_its_result_alone(loaded, monkeypatch, cores):
    """Without helpers every group chooses in turn; with them (as the engine's thread runs
    it), groups are cut into shares of 2 rows that this thread and a helper choose side by side."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the engine's thread chooses (sums of a row depend on threads)
    try:
        check_mixed_batch(loaded, monkeypatch, cores)
    finally:
        torch.set_num_threads(threads)


def check_mixed_batch(loaded, monkeypatch, cores):
    helpers = None
    if cores is not None:
        monkeypatch.setattr("llmlab.generation.engine.usable_cores", lambda: cores)
        helpers = concurrent.futures.ThreadPoolExecutor(
            1, initializer=engine_module._choosing_thread
        )
    group_sizes: list[int] = []
    together = steppers.advance_together

    def counting(group, logits, probs_before=None):
        group_sizes.append(len(group))
        return together(group, logits, probs_before)

    monkeypatch.setattr("llmlab.generation.engine.advance_together", counting)
    engine = Engine(model_name="test", max_rows=64)
    engine._running = [Request(stepper_for(loaded, p, s), state="running") for p, s in MIXED]
    twins = [stepper_for(loaded, p, s) for p, s in MIXED]  # the same requests, stepped alone
    batch = Batch(loaded.model, pad_id=0)
    logits = batch.prefill([p for r in engine._running for p in r.stepper.prompts])
    for step in range(STEPS):
        rows, offset = [], 0
        for twin in twins:
            rows.append(slice(offset, offset + twin.rows))
            offset += twin.rows
        alone = [twin.advance(logits[row]) for twin, row in zip(twins, rows, strict=True)]
        requests = list(engine._running)
        tokens, order = engine._advance_all(logits, helpers)
        for index, (request, expected) in enumerate(zip(requests, alone, strict=True)):
            kind, got = request.take(0)
            where = f"step {step}, request {index} {MIXED[index][1]}"
            assert kind == "step", where
            assert got.record == expected.record, where
            assert got.next_tokens == expected.next_tokens, where
            mine = getattr(request.stepper, "generator", None)
            theirs = getattr(twins[index], "generator", None)
            if mine is not None:
                assert torch.equal(mine.get_state(), theirs.get_state()), where
        if not tokens:
            break
        batch.select(order)
        logits = batch.step(tokens)
    assert step == STEPS - 1
    # The groups did form, two at every step: the three greedy requests (no-repeat-n-gram runs
    # row by row) and the three top-p ones; top-k with 3 candidates is not top-k with 10.
    if helpers is None:
        assert group_sizes == [3, 3] * STEPS
    else:  # each group of 3 cut into 2 + 1 (a single row chooses alone)
        helpers.shutdown()
        assert group_sizes == [2, 2] * STEPS


@pytest.mark.parametrize("vocab", [49_152, 262_144])  # SmolLM2's and Gemma's vocabularies
def test_the_draw_takes_the_token_and_generator_state_of_torch_multinomial(vocab):
    shapes = torch.Generator().manual_seed(vocab)
    cases = {
        "full": torch.randn(vocab, generator=shapes) * 3,
        "few left": torch.where(torch.rand(vocab, generator=shapes) < 0.999, -math.inf, 1.0),
        "one left": torch.full((vocab,), -math.inf).index_fill(0, torch.tensor([vocab - 1]), 0),
        "flat": torch.zeros(vocab),
    }
    for name, logits in cases.items():
        probs = torch.softmax(logits, dim=-1)
        mine = torch.Generator().manual_seed(17)
        theirs = torch.Generator().manual_seed(17)
        for draw_number in range(5):  # one generator over several steps
            expected = int(torch.multinomial(probs, 1, generator=theirs)[0])
            assert sampling.draw(probs, mine) == expected, (name, draw_number)
            assert torch.equal(mine.get_state(), theirs.get_state()), (name, draw_number)


def test_the_draw_leaves_the_shortcut_where_torch_would_see_a_zero_uniform():
    probs = torch.tensor([0.0, 0.5, 0.5])
    # torch's ratio for token 0 would be 0 / -0.0 = NaN, which its argmax takes as the largest.
    assert sampling.race(probs, torch.tensor([0.0, 0.3, 0.6], dtype=torch.float64)) is None
    assert sampling.race(probs, torch.tensor([0.9, 0.3, 0.6], dtype=torch.float64)) in (1, 2)
    assert sampling.matches_torch()


def test_a_bad_distribution_raises_what_torch_multinomial_raises():
    with pytest.raises(RuntimeError, match="probability tensor"):
        sampling.draw(torch.tensor([0.5, float("nan")]), torch.Generator().manual_seed(0))


def test_top_p_on_many_rows_cuts_each_row_as_it_is_cut_alone(gemma):
    """Real rows, sharp and flat, cut together: each equals its own cut."""
    prompts = ["Once upon a time", "Hi", "def fibonacci(n):", "안녕하세요 🙂 오늘"]
    batch = Batch(gemma.model, pad_id=0)
    logits = batch.prefill([gemma.tokenizer(p)["input_ids"] for p in prompts])
    rows = torch.cat([logits / 0.7, logits * 0.6, logits])  # sharp and flat distributions
    nucleus = TopP(0.9)
    together = nucleus.each_row(rows)
    for row in range(rows.shape[0]):
        assert torch.equal(together[row], nucleus(rows[row])), row


def cut_by_torch_sort(nucleus: TopP, row: torch.Tensor) -> torch.Tensor:
    """transformers' top-p arithmetic, on torch's own sort: the reference for the cut."""
    sorted_logits, sorted_indices = torch.sort(row, descending=False)
    sorted_remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - nucleus.top_p)
    sorted_remove[..., -1:] = False
    return row.masked_fill(sorted_remove.scatter(1, sorted_indices, sorted_remove), -math.inf)


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.99])
def test_the_cut_from_sorted_values_equals_the_cut_on_torch_sort(smollm2, gemma, top_p):
    """Real rows in float32 and bfloat16 (many equal scores), at several temperatures: among
    them rows whose cumulative mass at the cut lies within float rounding of 1 - top_p, where
    a sum taken in another order than transformers' moves the cut by a token."""
    nucleus = TopP(top_p)
    rows = []
    for loaded in (smollm2, gemma):
        batch = Batch(loaded.model, pad_id=0)
        logits = batch.prefill([loaded.tokenizer(p)["input_ids"] for p, _ in MIXED[:6]])
        for scale in (1.0, 0.6, 0.5 / 0.8, 1 / 0.8):
            rows += [logits * scale, (logits.to(torch.bfloat16).float() * scale)]
    ties = 0
    for block in rows:
        alone = torch.cat([cut_by_torch_sort(nucleus, r[None]) for r in block])
        assert torch.equal(nucleus.each_row(block), alone)
        assert torch.equal(nucleus.by_sorting(block), alone)
        for row in range(block.shape[0]):
            assert torch.equal(nucleus(block[row]), alone[row])
        found: dict = {}
        nucleus.each_row(block, found)
        ties += len(found)
    assert ties > 0  # rows with a tie at the cut were among them
    # Equal scores on both sides of the cut: the order of torch's sort decides, as it does alone.
    tied = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 3.0]])
    for p in (0.2, 0.5, 0.75):
        assert torch.equal(TopP(p)(tied), cut_by_torch_sort(TopP(p), tied))


@pytest.mark.parametrize(("top_p", "temperature"), [(0.9, 0.8), (0.3, 1.0), (0.95, 0.6)])
def test_a_tie_at_the_top_p_cut_gives_transformers_token_record_and_generator_state(
    smollm2, gemma, monkeypatch, top_p, temperature
):
    """Rows whose cut falls inside a run of equal bfloat16 scores are cut without a full sort
    and settled only when the tie could matter. Against transformers' own warpers and
    `torch.multinomial` on the same seeded generator, for every row and seed: the same token,
    the same generator state, the same kept flags and the probabilities of the record."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    counts = {"clear": 0, "settled": 0}
    clear, settle = steppers.draw_clear, TopP.settle

    def counted_clear(*args):
        token = clear(*args)
        counts["clear"] += token is not None
        return token

    def counted_settle(self, row):
        counts["settled"] += 1
        return settle(self, row)

    monkeypatch.setattr(steppers, "draw_clear", counted_clear)
    monkeypatch.setattr(TopP, "settle", counted_settle)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tied_rows = 0
    try:
        for loaded in (smollm2, gemma):
            batch = Batch(loaded.model, pad_id=0)
            logits = batch.prefill([loaded.tokenizer(p)["input_ids"] for p, _ in MIXED[:6]])
            rows = torch.cat([logits, logits * 0.5]).to(torch.bfloat16).float()
            # And a row whose cut falls inside 40 equal top scores: the tie is among the
            # record's candidates, so the row must be settled by torch's sort.
            even = torch.full((1, rows.shape[-1]), -20.0)
            even[0, 100:140] = 1.0
            rows = torch.cat([rows, even])
            ties: dict = {}
            TopP(top_p).each_row(rows / temperature, ties)
            tied_rows += len(ties)
            for seed in range(6):
                valid = decoding.validate_settings(
                    "top_p", max_new_tokens=2, top_p=top_p, temperature=temperature, seed=seed
                )
                group = [
                    steppers.TokenStepper(loaded.tokenizer, [1], 2, "top_p", valid, [])
                    for _ in range(rows.shape[0])
                ]
                advances = steppers.advance_together(group, rows)
                for row, (stepper, advance) in enumerate(zip(group, advances, strict=True)):
                    scores = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(
                        None, rows[row : row + 1].clone()))  # fmt: skip
                    probs = torch.softmax(scores, dim=-1)[0]
                    reference = torch.Generator().manual_seed(seed)
                    token = int(torch.multinomial(probs, 1, generator=reference)[0])
                    record = advance.record
                    assert record.chosen_id == token, (loaded.name, seed, row)
                    assert torch.equal(stepper.generator.get_state(), reference.get_state())
                    for candidate in record.candidates:
                        assert candidate.kept == bool(scores[0, candidate.token_id] > -math.inf)
                        assert candidate.prob_after == pytest.approx(
                            float(probs[candidate.token_id]), rel=1e-5, abs=1e-9
                        )
    finally:
        torch.set_num_threads(threads)
    assert tied_rows > 0  # the rows have ties at their cuts
    assert counts["clear"] > 0 and counts["settled"] > 0  # both ways were taken


def test_greedy_choice_from_the_top_candidates_equals_argmax_with_ties_and_nan():
    from llmlab.generation.steppers import greedy_choice

    generator = torch.Generator().manual_seed(0)
    # bfloat16 logits have few distinct values: ties at the top are common.
    scores = (torch.randn(64, 3000, generator=generator) * 4).to(torch.bfloat16).float()
    scores[5, :] = 1.0  # every token tied
    scores[7, 11] = math.nan
    top = torch.topk(scores, 10, dim=-1)
    assert int((top.values[:, 0] == top.values[:, 1]).sum()) >= 2  # the tie route is taken
    assert greedy_choice(scores, top) == torch.argmax(scores, dim=-1).tolist()
    assert greedy_choice(scores) == torch.argmax(scores, dim=-1).tolist()


def test_the_records_top_candidates_are_torch_topk_scores_from_each_row_alone(smollm2, gemma):
    """`top_ids` gives each row the scores `torch.topk` gives, high to low, ids that hold them,
    the same for a row alone as in any batch, and torch.topk's very ids wherever the best
    k + 1 scores have no ties; on real rows (bfloat16 logits tie at the top in most rows) and
    on rows made to take every way through it."""
    from llmlab.generation.records import top_ids

    blocks = []
    for loaded in (smollm2, gemma):
        batch = Batch(loaded.model, pad_id=0)
        logits = batch.prefill([loaded.tokenizer(p)["input_ids"] for p, _ in MIXED])
        blocks += [logits, logits.to(torch.bfloat16).float(), logits / 0.8]
    generator = torch.Generator().manual_seed(0)
    for vocab in (300, 49_152, 262_144, 262_144 + 81):
        made = torch.randn(12, vocab, generator=generator) * 3
        made[:6] = made[:6].to(torch.bfloat16).float()  # ties
        made[0] = 1.0  # every score equal
        made[1, 7] = math.nan
        made[2, 100:200] = -math.nan
        made[3] = -math.inf
        made[3, 9] = 2.0
        made[4, ::10] = 50.0  # more runs of the highest maximum than are taken
        made[5, 1000:1300] = math.nan  # NaN, which topk ranks first, in two runs
        made[6, -5:] = 40.0  # the best in the last, shorter run
        made[7, [3, 90, 250]] = 30.0  # the k-th best tied with one left out
        made[7, [5, 260]] = 31.0
        made[8, 256 * 7 : 256 * 8] = 20.0  # one run holds all the best
        blocks.append(made)
    other_ids = 0
    for block in blocks:
        for k in (1, 3, 10):
            top, reference = top_ids(block, k), torch.topk(block, k)
            assert torch.equal(top.values.nan_to_num(), reference.values.nan_to_num())
            picked = block.gather(-1, top.indices)
            assert torch.equal(picked.nan_to_num(), top.values.nan_to_num())
            assert all(len(set(row)) == k for row in top.indices.tolist())  # distinct ids
            for row in range(block.shape[0]):
                alone = top_ids(block[row : row + 1].clone(), k)
                assert torch.equal(alone.indices[0], top.indices[row])
            best = torch.sort(block, dim=-1, descending=True).values[:, : k + 1]
            untied = (best[:, 1:] != best[:, :-1]).all(dim=-1) & ~best.isnan().any(dim=-1)
            assert torch.equal(top.indices[untied], reference.indices[untied])
            other_ids += int((top.indices != reference.indices).any(dim=-1).sum())
    assert other_ids > 0  # among equal scores it took other ids than torch.topk somewhere
