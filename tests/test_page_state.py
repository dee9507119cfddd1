"""Page inputs in links and settings files: what is accepted, what is refused, and the notices."""

from __future__ import annotations

import json
import math

import pytest

from llmlab import page_state
from llmlab.page_state import (
    LINK_TEXT_LIMIT,
    Choice,
    Choices,
    Flag,
    Integer,
    Number,
    Text,
    encode,
    parse,
    read_settings_document,
    settings_document,
)

FIELDS = [
    Text("prompt", "p-prompt", "Once upon a time", max_chars=20_000),
    Choice("model", "p-model", "gemma-3-270m", always=True,
           options=("gemma-3-270m", "smollm2-135m-instruct")),
    Choice("early_stopping", "p-early", False, options=(False, True, "never")),
    Choices("tokenizers", "p-tokenizers", ["gpt2", "cl100k_base"],
            options=("gpt2", "cl100k_base", "o200k_base", "gemma-3"), max_items=3),
    Integer("seed", "p-seed", 0, low=0, high=2**31 - 1),
    Number("temperature", "p-temperature", 1.0, low=0.05, high=2.0, step=0.05),
    Number("length_penalty", "p-length", 1.0, low=-2.0, high=2.0, step=0.5),
    Flag("template", "p-template", True),
]  # fmt: skip
BY_NAME = {f.name: f for f in FIELDS}


def link(**params: str | list[str]) -> dict[str, list[str]]:
    """Query parameters as Streamlit hands them over: every value a list of strings."""
    return {k: v if isinstance(v, list) else [v] for k, v in params.items()}


def test_good_link_values_become_widget_values():
    parsed = parse(
        FIELDS,
        link(
            prompt="Hello <b>there</b>",
            model="smollm2-135m-instruct",
            early_stopping="never",
            tokenizers=["o200k_base", "gpt2"],
            seed="42",
            temperature="0.7",
            length_penalty="-1.5",
            template="0",
        ),
    )
    assert parsed.notices == []
    assert parsed.values == {
        "p-prompt": "Hello <b>there</b>",  # text stays text: escaped wherever it is shown
        "p-model": "smollm2-135m-instruct",
        "p-early": "never",
        "p-tokenizers": ["o200k_base", "gpt2"],
        "p-seed": 42,
        "p-temperature": 0.7,
        "p-length": -1.5,
        "p-template": False,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", "evil-model"),
        ("model", "<script>alert(1)</script>"),
        ("model", ""),
        ("early_stopping", "sometimes"),
        ("tokenizers", ["gpt2", "not-a-tokenizer"]),
        ("tokenizers", ["gpt2", "cl100k_base", "o200k_base", "gemma-3"]),  # over max_items
        ("seed", "-1"),
        ("seed", "1e3"),
        ("seed", "9" * 40),
        ("seed", "forty-two"),
        ("seed", str(2**31)),
        ("temperature", "nan"),
        ("temperature", "inf"),
        ("temperature", "-1"),
        ("temperature", "2.5"),
        ("temperature", "0x10"),
        ("temperature", "1" * 100),
        ("length_penalty", "NaN"),
        ("template", "maybe"),
        ("prompt", "x" * 1_000_000),
    ],
)
def test_bad_link_values_fall_back_with_a_notice_that_never_repeats_them(name, value):
    parsed = parse(FIELDS, link(**{name: value}))
    assert parsed.values == {}
    [notice] = parsed.notices
    assert notice.startswith(f"**{name}** in the link")
    assert "using the default" in notice
    raw = value if isinstance(value, str) else value[-1]
    if raw and raw not in {"gpt2", "cl100k_base"}:
        assert raw not in notice.replace(f"**{name}**", "")
    assert len(notice) < 300


def test_unknown_and_streamlit_parameters():
    parsed = parse(FIELDS, link(embed="true", zzz="1", **{"<img src=x>": "1"}))
    assert parsed.values == {}
    assert parsed.notices == ["2 settings in the link are not used by this page and were ignored."]
    assert "<img" not in parsed.notices[0]


def test_numbers_snap_to_the_slider_grid_and_repeated_parameters_take_the_last():
    assert parse(FIELDS, link(temperature="0.7300001")).values == {"p-temperature": 0.75}
    assert parse(FIELDS, link(temperature=["0.5", "0.6"])).values == {"p-temperature": 0.6}
    assert parse(FIELDS, link(length_penalty="0.74")).values == {"p-length": 0.5}
    assert parse(FIELDS, link(seed=" 7 ")).values == {"p-seed": 7}


def test_encode_leaves_defaults_out_but_keeps_the_always_fields():
    defaults = {f.key: f.default for f in FIELDS}
    assert encode(FIELDS, defaults).params == {"model": "gemma-3-270m"}
    changed = defaults | {"p-temperature": 0.7, "p-tokenizers": ["gemma-3"], "p-template": False}
    assert encode(FIELDS, changed).params == {
        "model": "gemma-3-270m",
        "tokenizers": ["gemma-3"],
        "temperature": "0.7",
        "template": "0",
    }


def test_link_round_trip_for_every_field():
    values = {
        "p-prompt": "Bonjour, <i>monde</i> & co",
        "p-model": "smollm2-135m-instruct",
        "p-early": True,
        "p-tokenizers": ["gemma-3"],
        "p-seed": 123456,
        "p-temperature": 0.35,
        "p-length": 2.0,
        "p-template": False,
    }
    params = encode(FIELDS, values).params
    assert parse(FIELDS, link(**params)) == page_state.Parsed(values=values, notices=[])


def test_long_text_stays_out_of_the_link_and_is_named():
    encoded = encode(FIELDS, {"p-prompt": "a" * (LINK_TEXT_LIMIT + 1), "p-model": "gemma-3-270m"})
    assert encoded.params == {"model": "gemma-3-270m"}
    assert encoded.left_out == ["prompt"]


def test_settings_file_round_trip_keeps_everything_even_long_text():
    values = {f.key: f.default for f in FIELDS} | {
        "p-prompt": "é" * 5_000,
        "p-early": "never",
        "p-seed": 9,
        "p-temperature": 1.95,
    }
    document = settings_document("decoding", FIELDS, values)
    data = json.loads(document)
    assert data["page"] == "decoding" and data["format"] == "llmlab-settings"
    assert data["settings"]["early_stopping"] == "never"
    assert read_settings_document("decoding", FIELDS, document.encode()).values == values


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"{", "not JSON"),
        (b"[1, 2]", "not an LLM Lab settings file"),
        (b'{"format": "other"}', "not an LLM Lab settings file"),
        (b'{"format": "llmlab-settings", "version": 99, "page": "decoding"}', "another version"),
        (b'{"format": "llmlab-settings", "version": 1, "page": "tokenizers", "settings": {}}',
         "settings of the **tokenizers** page"),
        (b'{"format": "llmlab-settings", "version": 1, "page": "<script>", "settings": {}}',
         "settings of another page"),
        (b'{"format": "llmlab-settings", "version": 1, "page": "decoding", "settings": 3}',
         "no settings"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b" " * (page_state.MAX_SETTINGS_BYTES + 1), "too big"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_settings_file_is_refused_in_one_sentence(data, expected):
    parsed = read_settings_document("decoding", FIELDS, data)
    assert parsed.values == {}
    [notice] = parsed.notices
    assert expected in notice


def test_settings_file_values_are_checked_like_link_values():
    document = {
        "format": "llmlab-settings",
        "version": 1,
        "page": "decoding",
        "settings": {
            "prompt": "\ud800 lone surrogate",
            "seed": True,  # a bool is not a seed
            "temperature": math.pi,  # out of range
            "tokenizers": "gpt2",  # one name is a list of one
            "template": "yes",
            "early_stopping": False,
        },
    }
    parsed = read_settings_document(
        "decoding", FIELDS, json.dumps(document, ensure_ascii=True).encode()
    )
    assert parsed.values == {"p-tokenizers": ["gpt2"], "p-template": True, "p-early": False}
    assert [n.split("**")[1] for n in parsed.notices] == ["prompt", "seed", "temperature"]
    assert all("settings file" in n for n in parsed.notices)


def test_branch_points_round_trip_through_a_link_and_a_settings_file():
    from llmlab.page_state import BranchPoints, encode, parse, read_settings_document
    from llmlab.page_state import settings_document as document

    fields = [BranchPoints("branches", "dec-branches", [])]
    tree = ["0.3.1234", "1.5.9", "0.0.7.2"]
    text = document("decoding", fields, {"dec-branches": tree})
    assert read_settings_document("decoding", fields, text).values == {"dec-branches": tree}
    params = encode(fields, {"dec-branches": tree}).params
    assert params == {"branches": tree}
    assert parse(fields, params).values == {"dec-branches": tree}
    assert encode(fields, {"dec-branches": []}).params == {}  # no branches: not in the link
    broken = read_settings_document("decoding", fields, text.replace('"1.5.9"', '"3.5.9"'))
    assert broken.values == {} and broken.notices[0].startswith("**branches** in the settings")
    assert "3.5.9" not in broken.notices[0]
