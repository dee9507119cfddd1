"""Branching a generation and the temperature ladder, against transformers on both models.

A greedy branch must equal `model.generate` on the prompt plus the imposed prefix. A sampled
branch must equal transformers' sampling on that prompt once the random stream has made the
draws of the steps before it (the definition of "the same seed after it"). A beam branch must
equal beam search on the prompt plus the prefix.
"""

from __future__ import annotations

import math

import pytest
import torch

import llmlab
from llmlab.generation.branch_points import BranchPoint, read_points
from llmlab.generation.branching import BranchTree, branch, first_difference, grow, rebuild
from llmlab.generation.decoding import generate
from llmlab.generation.engine import engine_for
from llmlab.generation.ladder import start_ladder, temperature_ladder

PROMPT = "Once upon a time"


@pytest.fixture(params=["smollm2", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def reference(loaded, prompt_ids: list[int], new_tokens: int, **settings) -> list[int]:
    ids = torch.tensor([prompt_ids])
    output = loaded.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, **settings
    )
    return output[0, ids.shape[1] :].tolist()


def second_choice(result, step: int) -> int:
    """The most likely candidate at `step` that the run did not take."""
    return next(
        c.token_id for c in result.steps[step].candidates if c.token_id != result.new_ids[step]
    )


@pytest.mark.parametrize("step", [0, 3])
def test_a_greedy_branch_equals_generate_on_the_forced_prefix(loaded, step):
    original = generate(loaded, PROMPT, max_new_tokens=8)
    token = second_choice(original, step)
    made = llmlab.branch(original, step, token, model=loaded)
    forced = original.new_ids[:step] + [token]
    assert made.new_ids[:step] == original.new_ids[:step] and made.new_ids[step] == token
    assert made.new_ids[step + 1 :] == reference(
        loaded, original.prompt_ids + forced, 8 - len(forced), do_sample=False
    )
    assert len(made.steps) == len(made.new_ids)
    # The records before the branch point are the original's (the same context).
    assert [s.chosen_id for s in made.steps[:step]] == original.new_ids[:step]
    assert made.steps[step].candidates[0].token_id == original.steps[step].candidates[0].token_id
    assert made.prompt == original.prompt and made.settings == original.settings


@pytest.mark.parametrize(
    ("strategy", "ours", "theirs"),
    [
        ("top_p", dict(top_p=0.9, temperature=0.8), dict(top_p=0.9, temperature=0.8, top_k=0)),
        ("sample", dict(temperature=1.2), dict(temperature=1.2, top_k=0, top_p=1.0)),
    ],
)
def test_a_sampled_branch_continues_the_same_random_stream(loaded, strategy, ours, theirs):
    seed, step, total = 11, 2, 8
    original = generate(loaded, PROMPT, strategy, max_new_tokens=total, seed=seed, **ours)
    token = second_choice(original, step)
    made = branch(original, step, token, model=loaded)
    again = branch(original, step, token, model=loaded)
    assert made.new_ids == again.new_ids  # reproducible
    forced = original.new_ids[:step] + [token]
    assert made.new_ids[: step + 1] == forced
    # The reference: transformers' sampling on prompt + prefix, after the random stream made
    # the draws of steps 0..step (a draw uses the same random numbers whatever the odds).
    torch.manual_seed(seed)
    vocab = loaded.model.config.vocab_size
    for _ in range(step + 1):
        torch.multinomial(torch.ones(1, vocab), 1)
    expected = reference(
        loaded, original.prompt_ids + forced, total - len(forced), do_sample=True, **theirs
    )
    assert made.new_ids[step + 1 :] == expected


def test_branching_with_the_token_taken_gives_back_the_original(smollm2):
    original = generate(smollm2, PROMPT, "top_k", max_new_tokens=8, seed=3, top_k=20)
    same = branch(original, 4, original.new_ids[4], model=smollm2)
    assert same.new_ids == original.new_ids and same.text == original.text


def test_a_branch_of_a_branch_and_a_tree_rebuilt_from_its_link(smollm2):
    original = generate(smollm2, PROMPT, "top_p", max_new_tokens=8, seed=5, top_p=0.9)
    tree = BranchTree([original])
    first = grow(tree, BranchPoint(0, 1, second_choice(original, 1)), smollm2)
    second = grow(tree, BranchPoint(first, 4, second_choice(tree.results[first], 4)), smollm2)
    assert tree.results[second].new_ids[:4] == tree.results[first].new_ids[:4]
    assert tree.divergence(second) == 4 and tree.divergence(first) == 1
    texts = tree.branch_texts()
    again, notices = rebuild(original, read_points(texts), smollm2)
    assert notices == []
    assert [r.new_ids for r in again.results] == [r.new_ids for r in tree.results]
    assert again.branch_texts() == texts


def test_a_point_that_does_not_fit_is_left_out_with_its_branches(smollm2):
    original = generate(smollm2, PROMPT, max_new_tokens=4)
    points = read_points(["0.9.5", "1.0.7", "0.1.7"])  # step 9 of a 4-token run
    tree, notices = rebuild(original, points, smollm2)
    assert len(tree) == 2 and tree.points[1] == BranchPoint(0, 1, 7)
    assert "step=9 is out of range" in notices[0] and "left out" in notices[1]


def test_a_beam_branch_equals_beam_search_on_the_forced_prefix(smollm2):
    settings = dict(num_beams=3, length_penalty=1.0, early_stopping=False)
    original = generate(smollm2, PROMPT, "beam", max_new_tokens=6, **settings)
    made = branch(original, 1, second_choice(original, 1), model=smollm2)
    forced = made.new_ids[:2]
    assert forced[0] == original.new_ids[0]
    assert made.new_ids[2:] == reference(
        smollm2, original.prompt_ids + forced, 4, do_sample=False, **settings
    )
    assert [s.step for s in made.steps] == list(range(len(made.steps)))
    assert all(b.tokens[:2] == forced for s in made.steps[2:] for b in s.beams)


def test_a_pruned_beam_can_be_continued(smollm2):
    settings = dict(num_beams=2, length_penalty=1.0, early_stopping=False)
    original = generate(smollm2, PROMPT, "beam", max_new_tokens=5, **settings)
    beams = original.steps[1].beams
    index = next(n for n, b in enumerate(beams) if not b.kept and not b.finished)
    pruned = beams[index].tokens
    made = branch(original, 1, pruned[-1], beam=index, model=smollm2)
    assert made.new_ids[:2] == pruned
    assert made.new_ids[2:] == reference(
        smollm2, original.prompt_ids + pruned, 3, do_sample=False, **settings
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r, m: branch(r, 4, 1, model=m), "step=4 is out of range: allowed 0..3"),
        (lambda r, m: branch(r, -1, 1, model=m), "step=-1 is out of range"),
        (lambda r, m: branch(r, 0, 10**7, model=m), "token_id=10000000 is out of range"),
        (lambda r, m: branch(r, 0, -3, model=m), "token_id=-3 is not allowed"),
        (lambda r, m: branch(r, 0, 1, beam=0, model=m), "beam=0 is not allowed for a greedy"),
        (lambda r, m: branch(r, 0, 1, model="gemma-3-270m"), "is not the model"),
    ],
)
def test_bad_branch_requests_name_the_argument(smollm2, call, message):
    original = generate(smollm2, PROMPT, max_new_tokens=4)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(original, smollm2)


def test_the_ladder_runs_in_one_batch_and_each_rung_equals_its_run_alone(smollm2):
    engine = engine_for(smollm2)
    before = engine.stats.requests
    streams = start_ladder(smollm2, PROMPT, (0.2, 1.0, 1.5), seed=4, max_new_tokens=8)
    assert engine.stats.requests - before == 4  # all submitted before any is read
    for stream in streams:
        for _ in stream:
            pass
    ladder = temperature_ladder(smollm2, PROMPT, (0.2, 1.0, 1.5), seed=4, max_new_tokens=8)
    assert ladder.greedy.new_ids == generate(smollm2, PROMPT, max_new_tokens=8).new_ids
    assert [s.result.new_ids for s in streams] == [ladder.greedy.new_ids] + [
        r.result.new_ids for r in ladder.runs
    ]
    for run in ladder.runs:
        alone = generate(
            smollm2, PROMPT, "sample", max_new_tokens=8, seed=4, temperature=run.temperature
        )
        assert run.result.new_ids == alone.new_ids
        assert run.departure == first_difference(ladder.greedy.new_ids, alone.new_ids)
        assert len(run.entropies) == len(alone.new_ids)


def test_entropy_per_step_equals_the_reference(smollm2):
    ids = smollm2.tokenizer(PROMPT)["input_ids"]
    logits = smollm2.model(torch.tensor([ids])).logits[0, -1].float()
    for temperature in (0.5, 1.5):
        run = generate(smollm2, PROMPT, "sample", max_new_tokens=1, temperature=temperature)
        probs = torch.softmax(logits / temperature, -1)
        expected = -float((probs * torch.log2(probs.clamp_min(1e-45))).sum())
        assert math.isclose(run.steps[0].entropy, expected, rel_tol=1e-4, abs_tol=1e-5)
    greedy = generate(smollm2, PROMPT, max_new_tokens=1)
    probs = torch.softmax(logits, -1)
    expected = -float((probs * torch.log2(probs.clamp_min(1e-45))).sum())
    assert math.isclose(greedy.steps[0].entropy, expected, rel_tol=1e-4, abs_tol=1e-5)


@pytest.mark.parametrize(
    ("temperatures", "message"),
    [
        ([], "temperatures=\\[\\]"),
        ([0.2, 0.2], "each temperature once"),
        ([0.0], "temperature=0.0"),
    ],
)
def test_a_bad_ladder_starts_nothing(smollm2, temperatures, message):
    engine = engine_for(smollm2)
    before = engine.stats.requests
    with pytest.raises(ValueError, match=message):
        start_ladder(smollm2, PROMPT, temperatures)
    assert engine.stats.requests == before
