"""Hostile links on every page: each input of the page gets each bad value of a catalogue at once.

A page opened from such a link must not fail, must name every refused setting in a notice (and
never repeat the value), must not render the value as HTML, and must rewrite the address bar to
what it really uses. The count of links tried and passed is printed.
"""

from __future__ import annotations

import re

import pytest
from app_helpers import html_bodies, page_from_link

from llmlab import page_state
from llmlab.app import sharing

PAGES = [
    "tokenizers", "architecture", "next_token", "decoding", "chat_vs_base", "embeddings",
    "training", "class",
]  # fmt: skip
CATALOGUE = {
    "empty": "",
    "whitespace": "   \t ",
    "long": "x" * 5_000,
    "nul and controls": "a\x00b\x07c\x1b[31m",
    "right-to-left": "\u202eabc\u202c",
    "zero-width joiner": "a\u200db\u200c",
    "script": "<script>alert(1)</script>",
    "markdown link": "[click](javascript:alert(1))",
    "negative": "-1",
    "not a number": "nan",
    "huge": "1e309",
    "many digits": "9" * 50,
}
RESULTS = {"tried": 0, "passed": 0}

# What must never reach the page as live markup: a real tag, or a javascript: attribute value.
# (Escaped, the same characters are harmless text: "&lt;script&gt;", ">javascript:alert<".)
LIVE = re.compile(r"<script|<img|=\s*[\"']?\s*javascript:", re.IGNORECASE)


@pytest.fixture(scope="module")
def declared() -> dict[str, list[page_state.Field]]:
    """Each page's fields, as the page itself declares them when it runs."""
    for page in PAGES:
        at = page_from_link(page, {})
        assert not at.exception, page
    missing = [page for page in PAGES if page not in sharing.DECLARED]
    assert not missing, f"pages without link settings: {missing}"
    return {page: sharing.DECLARED[page] for page in PAGES}


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("label", list(CATALOGUE))
def test_every_input_of_the_page_refuses_or_keeps_a_bad_value(declared, page, label):
    RESULTS["tried"] += 1
    value = CATALOGUE[label]
    fields = declared[page]
    params = {f.name: ([value] if isinstance(f, page_state.Choices) else value) for f in fields}
    expected = page_state.parse(
        fields, {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    )
    at = page_from_link(page, params)
    assert not at.exception, [e.value for e in at.exception]
    # A clear message is fine (say, "prompt is empty"); an unexpected error is not.
    assert not any("Something went wrong" in e.value for e in at.error), [e.value for e in at.error]
    notices = [w.value for w in at.warning]
    refused = {n.split("**")[1] for n in expected.notices}
    for name in refused:
        assert any(n.startswith(f"**{name}** in the link") for n in notices), name
    if 4 <= len(value.strip()) < 100:
        assert not any(value in n.replace("**", "") for n in notices if n.startswith("**"))
    for body in html_bodies(at):
        assert not LIVE.search(body), body[:200]
    # The address bar holds only what the page uses: reading it back refuses nothing.
    published = {k: v if isinstance(v, list) else [v] for k, v in dict(at.query_params).items()}
    again = page_state.parse(fields, published)
    assert again.notices == [], again.notices
    RESULTS["passed"] += 1


def test_the_chat_formats_inputs_are_in_the_sweep(declared):
    names = {spec.name for spec in declared["chat_vs_base"]}
    turns = {f"formats_user_{n}" for n in range(1, 5)} | {
        f"formats_assistant_{n}" for n in (1, 2, 3)
    }
    assert {"formats_system", "formats_user_turns"} | turns <= names


@pytest.mark.parametrize("page", ["next_token", "architecture"])
def test_the_knock_out_inputs_are_in_the_sweep(declared, page):
    assert {"knock_out", "ko_layer", "ko_head"} <= {spec.name for spec in declared[page]}


@pytest.mark.parametrize("page", ["next_token", "architecture"])
@pytest.mark.parametrize("label", ["empty", "negative", "not a number", "many digits", "script"])
def test_bad_layer_and_head_with_a_part_switched_off(page, label):
    """A valid part with a hostile layer and head: refused with a notice, layer 0 and head 0
    used, and the knock-out still shown."""
    RESULTS["tried"] += 1
    value = CATALOGUE[label]
    params = {"model": "smollm2-135m-instruct", "knock_out": "head", "ko_layer": value}
    params |= {"ko_head": value, **({"tab": "Run a prompt"} if page == "architecture" else {})}
    at = page_from_link(page, params)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    notices = [w.value for w in at.warning]
    for name in ("ko_layer", "ko_head"):
        assert any(n.startswith(f"**{name}** in the link") for n in notices), (name, notices)
    assert any(m.label == "KL divergence" for m in at.metric)
    assert at.query_params["knock_out"] == "head" and "ko_layer" not in at.query_params
    RESULTS["passed"] += 1


def test_print_the_count():
    print(f"\nhostile links: {RESULTS['passed']} of {RESULTS['tried']} passed")
    assert RESULTS["tried"] == RESULTS["passed"]


def test_the_branch_and_ladder_inputs_are_in_the_sweep(declared):
    names = {spec.name for spec in declared["decoding"]}
    assert {"branches", "ladder"} <= names


@pytest.mark.parametrize(
    "branches",
    [
        ["1.2.3"],  # the first branch can only leave the original
        ["0.2.3", "5.1.1"],  # a parent not made yet
        ["0.600.3"],  # past the last step a run can have
        ["0.1.99999999999"],  # a token id no model has
        ["0.1.2.99"],  # a beam no beam search has
        ["0.1"],
        ["0.1.2"] * 13,  # more branches than a tree keeps
        ["<script>alert(1)</script>"],
        ["0.1.2", "javascript:alert(1)"],
    ],
)
def test_bad_branch_points_in_a_link_are_refused_with_a_notice(branches):
    at = page_from_link("decoding", {"branches": branches})
    assert not at.exception and not at.error
    notices = [w.value for w in at.warning]
    assert any(n.startswith("**branches** in the link") for n in notices), notices
    assert not any("script" in n or "javascript" in n for n in notices)
    assert "branches" not in at.query_params
    assert "dec-branches" not in at.session_state  # nothing of the refused value is kept


def test_bad_ladder_temperatures_in_a_link_are_refused_with_a_notice():
    at = page_from_link("decoding", {"ladder": ["0.2", "0.3"], "mode": "Temperature ladder"})
    assert not at.exception and not at.error
    assert any(w.value.startswith("**ladder** in the link") for w in at.warning)
    assert at.multiselect(key="dec-ladder").value == [0.2, 0.7, 1.0, 1.5]
