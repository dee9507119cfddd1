"""A page's inputs as data: read from a shared link or a settings file, checked, written back.

Each page lists its inputs as fields: the name used in links and files, the widget key, the
default and what is allowed. `parse` turns untrusted values (a link's query parameters, a JSON
settings file) into widget values, with a plain-language notice for every value it refused;
a refused value falls back to the default. `encode` turns the page's current values into query
parameters, leaving defaults out so links stay short.

>>> fields = [Number("temperature", "nt-temperature", 1.0, low=0.05, high=2.0, step=0.05)]
>>> parse(fields, {"temperature": ["0.7"]}).values
{'nt-temperature': 0.7}
>>> parse(fields, {"temperature": ["9"]}).notices
['**temperature** in the link must be between 0.05 and 2.0; using the default (1.0).']
>>> encode(fields, {"nt-temperature": 0.7}).params
{'temperature': '0.7'}

`PageInputs` is one page's list of fields, the data its link, its settings file and its widgets
agree on; `llmlab.app.sharing.PageSettings` keeps it in the session and the address bar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from llmlab.exports import file_stem

# Text longer than this stays out of links: a browser sends the whole link to the server, and
# servers refuse requests much over 64 KB (each non-ASCII character takes up to 12 bytes).
LINK_TEXT_LIMIT = 2_000
# A settings file is a few hundred bytes; anything this big is not one.
MAX_SETTINGS_BYTES = 1_000_000
# Parameters Streamlit itself reads from the link; never reported as unknown.
RESERVED = frozenset({"embed", "embed_options"})
SETTINGS_FORMAT = "llmlab-settings"
SETTINGS_VERSION = 1


class Refused(ValueError):
    """A value that cannot be used; the message says what is allowed."""


@dataclass(frozen=True)
class Field:
    """One input of a page: `name` in links and files, `key` of its widget, `default` value."""

    name: str
    key: str
    default: Any
    always: bool = False  # put in every link, even at its default (say, which model)

    def convert(self, raw: Any) -> Any:
        """The widget value for `raw` (a link's text or a JSON value); `Refused` if not allowed."""
        raise NotImplementedError

    def to_link(self, value: Any) -> str | list[str]:
        return str(value)

    def to_json(self, value: Any) -> Any:
        return value

    def describe(self, value: Any) -> str:
        return str(value)


def _one(raw: Any) -> Any:
    """A link gives every parameter as a list of strings; a scalar field takes the last one."""
    if isinstance(raw, list):
        if not raw:
            raise Refused("must not be empty")
        return raw[-1]
    return raw


@dataclass(frozen=True)
class Text(Field):
    max_chars: int = 20_000

    def convert(self, raw: Any) -> str:
        raw = _one(raw)
        if not isinstance(raw, str):
            raise Refused("must be text")
        if len(raw) > self.max_chars:
            raise Refused(f"is longer than {self.max_chars:,} characters")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, possible in JSON ("\ud800")
            raise Refused("is not valid Unicode text") from None
        return raw

    def describe(self, value: Any) -> str:
        return "the example text" if value else "empty"


@dataclass(frozen=True)
class Integer(Field):
    low: int = 0
    high: int = 2**31 - 1

    def convert(self, raw: Any) -> int:
        raw = _one(raw)
        if isinstance(raw, bool):
            raise Refused("must be a whole number")
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, str):
            text = raw.strip()
            if not (text.lstrip("-").isdigit() and len(text) <= 20):
                raise Refused(f"must be a whole number from {self.low} to {self.high}")
            raw = int(text)
        if not isinstance(raw, int):
            raise Refused(f"must be a whole number from {self.low} to {self.high}")
        if not self.low <= raw <= self.high:
            raise Refused(f"must be a whole number from {self.low} to {self.high}")
        return raw


@dataclass(frozen=True)
class Number(Field):
    low: float = 0.0
    high: float = 1.0
    step: float | None = None  # values are snapped to the slider's grid

    def convert(self, raw: Any) -> float:
        raw = _one(raw)
        if isinstance(raw, bool):
            raise Refused("must be a number")
        if isinstance(raw, str):
            if len(raw) > 40:
                raise Refused(f"must be a number between {self.low} and {self.high}")
            try:
                raw = float(raw)
            except ValueError:
                raise Refused(f"must be a number between {self.low} and {self.high}") from None
        if not isinstance(raw, int | float) or not math.isfinite(raw):
            raise Refused(f"must be a number between {self.low} and {self.high}")
        if not self.low <= raw <= self.high:
            raise Refused(f"must be between {self.low} and {self.high}")
        value = float(raw)
        if self.step:
            digits = max(0, -math.floor(math.log10(self.step)) + 1)
            steps = round((value - self.low) / self.step)
            value = round(min(self.high, self.low + steps * self.step), digits)
        return value

    def to_link(self, value: Any) -> str:
        return repr(float(value))


@dataclass(frozen=True)
class Flag(Field):
    TRUE = ("1", "true", "yes", "on")
    FALSE = ("0", "false", "no", "off")

    def convert(self, raw: Any) -> bool:
        raw = _one(raw)
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in self.TRUE + self.FALSE:
            return raw.strip().lower() in self.TRUE
        raise Refused("must be 1 or 0 (true or false)")

    def to_link(self, value: Any) -> str:
        return "1" if value else "0"


def _match(options: Sequence[Any], raw: Any) -> Any:
    """The option equal to `raw`, comparing JSON values directly and link text with str()."""
    for option in options:
        if type(raw) is type(option) and raw == option:
            return option
    if isinstance(raw, str):
        for option in options:
            if str(option) == raw:
                return option
    raise Refused("is not one of the choices")


@dataclass(frozen=True)
class Choice(Field):
    options: tuple[Any, ...] = ()

    def convert(self, raw: Any) -> Any:
        try:
            return _match(self.options, _one(raw))
        except Refused:
            shown = ", ".join(str(o) for o in self.options[:8])
            more = ", ..." if len(self.options) > 8 else ""
            raise Refused(f"must be one of: {shown}{more}") from None


@dataclass(frozen=True)
class Choices(Field):
    """Several of the options (a multiselect): repeated in links (`?t=gpt2&t=o200k_base`)."""

    options: tuple[Any, ...] = ()
    max_items: int | None = None

    def convert(self, raw: Any) -> list[Any]:
        items = raw if isinstance(raw, list) else [raw]
        chosen: list[Any] = []
        for item in items:
            try:
                option = _match(self.options, item)
            except Refused:
                raise Refused(
                    "lists something that is not one of the choices "
                    f"({', '.join(str(o) for o in self.options[:8])}"
                    f"{', ...' if len(self.options) > 8 else ''})"
                ) from None
            if option not in chosen:
                chosen.append(option)
        if self.max_items is not None and len(chosen) > self.max_items:
            raise Refused(f"may list at most {self.max_items}")
        return chosen

    def to_link(self, value: Any) -> list[str]:
        return [str(v) for v in value]

    def describe(self, value: Any) -> str:
        return ", ".join(str(v) for v in value) or "none"


@dataclass(frozen=True)
class BranchPoints(Field):
    """A tree of branched generations: each branch as ``parent.step.token`` (see
    `llmlab.generation.branch_points`), repeated in links (``?branches=0.3.1234&branches=1.5.9``).

    >>> BranchPoints("branches", "k", []).convert(["0.3.1234", "1.5.9"])
    ['0.3.1234', '1.5.9']
    """

    def convert(self, raw: Any) -> list[str]:
        from llmlab.generation.branch_points import MAX_BRANCHES, read_points

        items = raw if isinstance(raw, list) else [raw]
        try:
            if not all(isinstance(item, str) for item in items):
                raise ValueError("not text")
            points = read_points(items)
        except ValueError:
            raise Refused(
                "must list branch points written parent.step.token (for instance 0.3.1234), "
                f"each leaving the original (0) or an earlier branch, at most {MAX_BRANCHES}"
            ) from None
        return [point.text for point in points]

    def to_link(self, value: Any) -> list[str]:
        return [str(v) for v in value]

    def describe(self, value: Any) -> str:
        return f"{len(value)} branches" if value else "none"


@dataclass
class Parsed:
    """Widget values to apply (by widget key) and a notice for each value refused."""

    values: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def parse(fields: Sequence[Field], raw: Mapping[str, Any], source: str = "link") -> Parsed:
    """Check untrusted values against the fields: good ones become widget values, bad ones a notice.

    Notices never repeat the refused value (it may be a megabyte, or markup): they name the
    setting, say what is allowed and what is used instead.
    """
    by_name = {f.name: f for f in fields}
    parsed = Parsed()
    unknown = 0
    for name, value in raw.items():
        if name in RESERVED:
            continue
        spec = by_name.get(name)
        if spec is None:
            unknown += 1
            continue
        try:
            parsed.values[spec.key] = spec.convert(value)
        except Refused as reason:
            parsed.notices.append(
                f"**{spec.name}** in the {source} {reason}; "
                f"using the default ({spec.describe(spec.default)})."
            )
    if unknown:
        parsed.notices.append(
            f"{unknown} setting{'s' if unknown > 1 else ''} in the {source} "
            f"{'are' if unknown > 1 else 'is'} not used by this page and "
            f"{'were' if unknown > 1 else 'was'} ignored."
        )
    return parsed


@dataclass
class Encoded:
    """Query parameters for a link, and the names of settings too long to go in one."""

    params: dict[str, str | list[str]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def _is_default(spec: Field, value: Any) -> bool:
    if isinstance(spec, Number):
        return math.isclose(float(value), float(spec.default), abs_tol=1e-9)
    return value == spec.default


def encode(fields: Sequence[Field], values: Mapping[str, Any]) -> Encoded:
    """The query parameters that reproduce `values` (by widget key); defaults are left out."""
    encoded = Encoded()
    for spec in fields:
        if spec.key not in values or values[spec.key] is None:
            continue
        value = values[spec.key]
        if not spec.always and _is_default(spec, value):
            continue
        if isinstance(spec, Text) and len(value) > LINK_TEXT_LIMIT:
            encoded.left_out.append(spec.name)
            continue
        encoded.params[spec.name] = spec.to_link(value)
    return encoded


def settings_document(page: str, fields: Sequence[Field], values: Mapping[str, Any]) -> str:
    """A JSON settings file holding every field's current value (defaults included)."""
    settings = {
        spec.name: spec.to_json(values.get(spec.key, spec.default))
        for spec in fields
        if values.get(spec.key, spec.default) is not None
    }
    document = {
        "format": SETTINGS_FORMAT,
        "version": SETTINGS_VERSION,
        "page": page,
        "settings": settings,
    }
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"


def read_settings_document(page: str, fields: Sequence[Field], data: bytes | str) -> Parsed:
    """Check a settings file for `page`; a file that cannot be used gives one notice, no values."""
    if len(data) > MAX_SETTINGS_BYTES:
        return Parsed(notices=["This file is too big to be an LLM Lab settings file."])
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return Parsed(notices=["This file is not JSON, so it is not an LLM Lab settings file."])
    if not isinstance(document, dict) or document.get("format") != SETTINGS_FORMAT:
        return Parsed(notices=["This JSON file is not an LLM Lab settings file."])
    if document.get("version") != SETTINGS_VERSION:
        return Parsed(
            notices=["This settings file comes from another version of LLM Lab and cannot be read."]
        )
    if document.get("page") != page:
        other = document.get("page")
        known = isinstance(other, str) and other.isidentifier() and len(other) <= 40
        where = f"the **{other}** page" if known else "another page"
        return Parsed(notices=[f"This file holds settings of {where}, not of this one."])
    settings = document.get("settings")
    if not isinstance(settings, dict):
        return Parsed(notices=["This settings file has no settings in it."])
    return parse(fields, settings, source="settings file")


# Compared by identity, not by value: a page's settings object is one per page run, and
# Streamlit keeps its bound methods as widget callbacks.
@dataclass(eq=False)
class PageInputs:
    """One page's inputs: the page's name (as settings files give it) and its fields.

    >>> inputs = PageInputs("demo", [Integer("steps", "demo-steps", 4, low=1, high=10)])
    >>> inputs.field("steps").key, inputs.bounds("steps")
    ('demo-steps', (1, 10, 4, 1))
    >>> inputs.values_in({"demo-steps": 7, "another-page-key": 1})
    {'demo-steps': 7}
    >>> inputs.settings_file_name
    'llmlab-demo-settings.json'
    """

    page: str
    fields: list[Field]

    def __post_init__(self) -> None:
        self.fields = list(self.fields)

    def field(self, name: str) -> Field:
        """The field called `name` (its link name)."""
        return next(spec for spec in self.fields if spec.name == name)

    def bounds(self, name: str) -> tuple[Any, Any, Any, Any]:
        """A number field's widget arguments (min, max, default, step): the range its link
        accepts, so a slider and its field cannot disagree."""
        spec = self.field(name)
        return spec.low, spec.high, spec.default, getattr(spec, "step", None) or 1

    def values_in(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The page's current values, by widget key, out of a session's state."""
        return {f.key: state[f.key] for f in self.fields if f.key in state}

    @property
    def settings_file_name(self) -> str:
        return f"llmlab-{file_stem(self.page)}-settings.json"


def share_link(address: str, params: Mapping[str, Any]) -> str:
    """The page's address with `params` as its query: the link that opens the same inputs.

    >>> share_link("http://localhost:8501/decoding", {"strategy": "top_p", "prompt": "a b"})
    'http://localhost:8501/decoding?strategy=top_p&prompt=a+b'
    >>> share_link("", {})
    ''
    """
    query = urlencode(params, doseq=True)
    return address + (f"?{query}" if query else "")


def link_too_long(length: int) -> Parsed:
    """What a page says when a link was too long for the app to read at all (no values).

    >>> link_too_long(90_000).notices[0][:42]
    'This link is too long for the app to read '
    """
    return Parsed(
        notices=[
            "This link is too long for the app to read "
            f"({length:,} characters), so the page opened with its default inputs."
        ]
    )
