"""The filter waterfall module: its examples, and the names it keeps public elsewhere."""

from __future__ import annotations

import llmlab
from llmlab.generation import filter_steps
from llmlab.generation import next_token as nt


def test_public_names_are_unchanged():
    assert llmlab.waterfall is filter_steps.waterfall is nt.waterfall
    assert nt.candidates is filter_steps.candidates
    assert nt.entropy_bits is filter_steps.entropy_bits
    assert nt.FilterStep is filter_steps.FilterStep
