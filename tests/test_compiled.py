"""The compiled decode step of a lone row (`llmlab.generation.compiled`), in float32, against
`model.generate` and the eager step: in a process of its own (tests/compiled_check.py, started by
conftest as the run starts), since compiling takes a minute and leaves threads and caches
behind."""

from __future__ import annotations

import json

import pytest

from llmlab.generation import compiled


def test_switch_and_which_models():
    assert compiled.compile_from_env({"LLMLAB_COMPILE": "off"}) is False
    assert compiled.compile_from_env({"LLMLAB_COMPILE": "1"}) is True
    # The tests run eager (conftest): only this module's process compiles.
    assert compiled.compiled_for(object()) is None


@pytest.fixture(scope="module")
def found(compiled_result):
    """What tests/compiled_check.py found (conftest starts it with the run)."""
    returncode, stdout, stderr = compiled_result
    assert returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def test_it_compiles_for_smollm2_and_not_for_gemma(found):
    assert found["ready"], (found["error"], f"waited {found['compile_wait_seconds']} s")
    assert found["gemma_compiles"] is False  # sliding-window layers: it does not pay


def test_a_lone_request_through_the_engine_equals_generate(found):
    assert found["reference_lengths"] == [72, 24]  # neither stopped early: all tokens compared
    assert found["alone_ids_equal"]
    assert found["alone_prob_gap"] < 1e-4
    # The row wrote in the slot until it was full (64 columns), then in the batch.
    assert found["engine_compiled_steps"] == 64 - found["prompt_tokens"]


def test_a_row_moves_from_its_slot_to_the_batch_when_it_outgrows_it(found):
    assert found["by_hand_ids_equal"]
    first_in_slot, last_in_slot, compiled_steps = found["slot_then_batch"]
    assert first_in_slot and not last_in_slot  # in the slot from the first step, not the last
    assert compiled_steps == 64 - found["prompt_tokens"]


def test_a_second_row_joining_moves_the_first_back_into_the_batch(found):
    assert found["joined"] == [True, True, 2]
    assert found["joined_ids_equal"] == [True, True]


def test_requests_at_once_still_equal_generate(found):
    assert found["threads_ids_equal"] == [True, True]
