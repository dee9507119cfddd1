"""One conversation in every chat format the lab has a real template for, side by side.

Every instruction-tuned family writes the same messages differently: ChatML wraps each turn in
``<|im_start|>`` ... ``<|im_end|>``, Phi-3 has ``<|user|>`` and ``<|assistant|>`` tokens, Llama 2
and Mistral put each user turn inside ``[INST] ... [/INST]``. Each format here comes from a real
source, never from a copy typed into this file:

- ChatML: SmolLM2's tokenizer (the lab's chat model), and the template in llama.cpp's Qwen2
  vocabulary file;
- Phi-3: the template in llama.cpp's Phi-3 vocabulary file;
- Mistral: ``mistral-common``'s instruct encoding, with Mistral 7B's v1 tokenizer;
- Llama 2: Meta's reference code (``llama/generation.py``, ``chat_completion``), which ships no
  Jinja template: `llama2_parts` follows it line by line;
- Gemma 3: the template of ``google/gemma-3-270m-it``, only when the Hugging Face Hub answers.

The Llama 2 format needs no files at all:

    >>> "".join(text for text, _ in llama2_parts(conversation("Be brief.", ["Hi"])))
    '<s>[INST] <<SYS>>\\nBe brief.\\n<</SYS>>\\n\\nHi [/INST]'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmlab import assets, chat
from llmlab.rendered_chat import Segment
from llmlab.tokenization.pieces import require_utf8

MAX_USER_TURNS = 4  # the page's conversation: up to four user turns, the assistant's in between
GEMMA_HUB_ID = "google/gemma-3-270m-it"

# Meta's markers, as `llama/generation.py` defines them.
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
# Meta's reference code refuses to answer when a message contains one of these.
LLAMA2_SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")


# --- the conversation ---------------------------------------------------------------------------


def conversation(system: str, turns: Sequence[str]) -> list[dict[str, str]]:
    """Messages from a system prompt (blank: none) and alternating user / assistant turns.

    The turns start and end with the user, so every format can add the assistant's turn next.

    >>> [m["role"] for m in conversation("", ["Hi", "Hello!", "Bye"])]
    ['user', 'assistant', 'user']
    >>> conversation("", ["Hi", "Hello!"])
    Traceback (most recent call last):
    ...
    ValueError: turns has 2 turns; it must end with a user turn (an odd number: user, assistant, ..., user)
    """
    if not isinstance(system, str):
        raise ValueError(f"system={system!r:.60} must be a string")
    if isinstance(turns, str) or not isinstance(turns, Sequence) or not turns:
        raise ValueError(f"turns={turns!r:.60} must be a list of at least one user turn")
    if len(turns) % 2 == 0:
        raise ValueError(
            f"turns has {len(turns)} turns; it must end with a user turn "
            "(an odd number: user, assistant, ..., user)"
        )
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for index, text in enumerate(turns):
        role = "user" if index % 2 == 0 else "assistant"
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"turns[{index}] (the {role}'s turn {index // 2 + 1}) is empty; type something"
            )
        require_utf8(text, f"turns[{index}]")
        messages.append({"role": role, "content": text})
    return chat.validate_messages(messages)


def _split_system(
    messages: Sequence[Mapping[str, str]],
) -> tuple[str | None, list[Mapping[str, str]]]:
    """The system prompt (None when there is no system message) and the other messages."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], list(messages[1:])
    return None, list(messages)


# --- Llama 2, as Meta's reference code writes it ------------------------------------------------


def llama2_parts(messages: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """Llama 2's prompt as (text, kind) parts, joined the way Meta's `chat_completion` joins them.

    Meta's code folds a system prompt into the first user turn (``B_SYS + system + E_SYS +
    user``), strips each turn, and encodes every exchange on its own as ``<s>`` +
    ``"[INST] {user} [/INST] {answer} "`` + ``</s>``; the last user turn is ``<s>`` +
    ``"[INST] {user} [/INST]"``. Here ``<s>`` and ``</s>`` are written as text, the way chat
    templates write them, so the family's tokenizer reads them back as the same tokens.

    >>> [kind for _, kind in llama2_parts([{"role": "user", "content": "Hi"}])]
    ['special', 'template', 'content', 'template']
    """
    system, dialog = _split_system(messages)
    roles = [m["role"] for m in dialog]
    if roles[::2] != ["user"] * len(roles[::2]) or roles[1::2] != ["assistant"] * len(roles[1::2]):
        raise ValueError(
            "messages must alternate user, assistant, user, ... after an optional system prompt "
            f"(Meta's Llama 2 code allows nothing else); got roles {roles}"
        )
    if not roles or roles[-1] != "user":
        raise ValueError("messages must end with a user turn: Llama 2 answers the last user turn")
    turns = [m["content"].strip() for m in dialog]
    if system is not None:
        # Meta strips B_SYS + system + E_SYS + user as one string: only the user's end is cut.
        turns[0] = dialog[0]["content"].rstrip()
    parts: list[tuple[str, str]] = []
    for index in range(0, len(turns), 2):
        parts += [("<s>", "special"), (f"{B_INST} ", "template")]
        if index == 0 and system is not None:
            parts += [(B_SYS, "template"), (system, "content"), (E_SYS, "template")]
        parts += [(turns[index], "content"), (f" {E_INST}", "template")]
        if index + 1 < len(turns):
            parts += [(" ", "template"), (turns[index + 1], "content"), (" ", "template")]
            parts.append(("</s>", "special"))
    return [(text, kind) for text, kind in parts if text]


def _merge(parts: Sequence[tuple[str, str]]) -> list[Segment]:
    segments: list[Segment] = []
    for text, kind in parts:
        if segments and segments[-1].kind == kind:
            segments[-1] = Segment(segments[-1].text + text, kind)
        else:
            segments.append(Segment(text, kind))
    return segments


# --- what each format gives ---------------------------------------------------------------------


@dataclass(frozen=True)
class FormatRendering:
    """One conversation in one format: the exact text, its tokens, and how it was made."""

    key: str
    title: str
    source: str  # where the format comes from
    tokenizer: str  # whose tokenizer counted the tokens
    system_handling: str  # what the format does with a system prompt, in plain words
    text: str
    ids: list[int]
    segments: list[Segment]  # `text` cut into special / template / content stretches
    typed: list[tuple[str, int]] = field(default_factory=list)  # special tokens typed in turns
    notices: list[str] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Unavailable:
    """A format the lab cannot show here, and why."""

    key: str
    title: str
    reason: str


@dataclass(frozen=True)
class Marker:
    """A marker a format writes: a special token (with its id) or plain text (with its length)."""

    format: str  # a format's title
    marker: str
    special: bool
    ids: list[int]  # one id for a special token; the plain-text tokens otherwise
    meaning: str


class ChatFormat:
    """A chat format backed by a real template and its family's tokenizer."""

    key = ""
    title = ""
    source = ""
    tokenizer_title = ""
    system_handling = ""
    markers: tuple[tuple[str, str], ...] = ()  # (marker, what it means)

    def render(self, messages: Sequence[Mapping[str, str]]) -> FormatRendering:
        raise NotImplementedError

    def marker_ids(self, marker: str) -> tuple[bool, list[int]]:
        """(whether `marker` is one special token, the ids this family's tokenizer gives it)."""
        raise NotImplementedError

    def count(self, text: str) -> int:
        """How many tokens this family's tokenizer makes of `text` (special-token text included)."""
        raise NotImplementedError


class TemplateFormat(ChatFormat):
    """A format whose Jinja chat template sits in a Hugging Face tokenizer."""

    def __init__(
        self,
        key: str,
        title: str,
        source: str,
        tokenizer_title: str,
        system_handling: str,
        markers: tuple[tuple[str, str], ...],
        tokenizer: Any,
    ):
        self.key, self.title, self.source = key, title, source
        self.tokenizer_title, self.system_handling = tokenizer_title, system_handling
        self.markers, self.tokenizer = markers, tokenizer

    def render(self, messages: Sequence[Mapping[str, str]]) -> FormatRendering:
        rendered = chat.render_chat(self.tokenizer, messages, add_generation_prompt=True)
        typed = _typed(messages, self.tokenizer)
        return FormatRendering(
            self.key,
            self.title,
            self.source,
            self.tokenizer_title,
            self.system_handling,
            rendered.text,
            rendered.ids,
            rendered.segments,
            typed,
        )

    def marker_ids(self, marker: str) -> tuple[bool, list[int]]:
        ids = self.tokenizer(marker, add_special_tokens=False)["input_ids"]
        return len(ids) == 1 and ids[0] in chat.special_ids(self.tokenizer), list(ids)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _typed(messages: Sequence[Mapping[str, str]], tokenizer: Any) -> list[tuple[str, int]]:
    found: dict[int, str] = {}
    for message in messages:
        for token, token_id in chat.typed_special_tokens(message["content"], tokenizer):
            found.setdefault(token_id, token)
    return [(token, token_id) for token_id, token in found.items()]


class Llama2Format(TemplateFormat):
    """Llama 2 from Meta's reference code (`llama2_parts`), counted by Llama's tokenizer."""

    def render(self, messages: Sequence[Mapping[str, str]]) -> FormatRendering:
        clean = chat.validate_messages(messages)
        parts = llama2_parts(clean)
        text = "".join(piece for piece, _ in parts)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        notices = []
        tags = [tag for tag in LLAMA2_SPECIAL_TAGS if any(tag in m["content"] for m in clean)]
        if tags:
            named = ", ".join(chat._inline_code(tag) for tag in tags)
            notices.append(
                f"Your text contains {named}: plain text to the tokenizer, but the markers of "
                "this format. Meta's reference code refuses to answer such a prompt (\"Error: "
                'special tags are not allowed as part of the prompt.").'
            )
        return FormatRendering(
            self.key,
            self.title,
            self.source,
            self.tokenizer_title,
            self.system_handling,
            text,
            ids,
            chat._mark_typed(_merge(parts), self.tokenizer),
            _typed(clean, self.tokenizer),
            notices,
        )


class MistralFormat(ChatFormat):
    """Mistral from `mistral-common`'s own instruct encoding (`encode_chat_completion`)."""

    def __init__(
        self,
        key: str,
        title: str,
        source: str,
        tokenizer_title: str,
        system_handling: str,
        markers: tuple[tuple[str, str], ...],
        tokenizer: Any,
    ):
        self.key, self.title, self.source = key, title, source
        self.tokenizer_title, self.system_handling = tokenizer_title, system_handling
        self.markers, self.mistral = markers, tokenizer
        self.raw = tokenizer.instruct_tokenizer.tokenizer  # the SentencePiece tokenizer itself

    def encode(self, messages: Sequence[Mapping[str, str]]) -> Any:
        """mistral-common's own result (`.tokens`, `.text`) for the messages."""
        from mistral_common.protocol.instruct.messages import (
            AssistantMessage,
            SystemMessage,
            UserMessage,
        )
        from mistral_common.protocol.instruct.request import ChatCompletionRequest

        kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
        request = ChatCompletionRequest(
            messages=[kinds[m["role"]](content=m["content"]) for m in messages]
        )
        try:
            return self.mistral.encode_chat_completion(request)
        except Exception as error:  # noqa: BLE001 - mistral-common's own exception classes
            raise ValueError(f"mistral-common refused the conversation: {error}") from error

    def _decode(self, ids: list[int]) -> str:
        from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

        return self.raw.decode(ids, special_token_policy=SpecialTokenPolicy.IGNORE)

    def render(self, messages: Sequence[Mapping[str, str]]) -> FormatRendering:
        clean = chat.validate_messages(messages)
        ids = list(self.encode(clean).tokens)
        # The text: each run of ordinary tokens decoded (SentencePiece drops the "▁" a fresh
        # encode starts with), each control token (<s>, </s>) by its name.
        text, spans, run = "", [], []
        for token_id in [*ids, None]:
            if token_id is not None and not self.raw.is_special(token_id):
                run.append(token_id)
                continue
            text += self._decode(run) if run else ""
            run = []
            if token_id is not None:
                name = self.raw.id_to_piece(token_id)
                spans.append((len(text), len(text) + len(name)))
                text += name
        segments = chat._segments(text, spans, clean)
        notices = []
        if any(self.raw.id_to_piece(i) in m["content"] for i in (1, 2) for m in clean):
            notices.append(
                "Your text contains `<s>` or `</s>`: mistral-common never reads typed text as a "
                "control token, so here they stay ordinary characters (several tokens each)."
            )
        return FormatRendering(
            self.key,
            self.title,
            self.source,
            self.tokenizer_title,
            self.system_handling,
            text,
            ids,
            segments,
            [],
            notices,
        )

    def _pieces(self, text: str) -> list[int]:
        ids: list[int] = []
        names = {self.raw.id_to_piece(i): i for i in (self.raw.bos_id, self.raw.eos_id)}
        rest = text
        while rest:
            hits = [(rest.find(name), name) for name in names if name in rest]
            if not hits:
                return ids + self.raw.encode(rest, bos=False, eos=False)
            start, name = min(hits)
            if start:
                ids += self.raw.encode(rest[:start], bos=False, eos=False)
            ids.append(names[name])
            rest = rest[start + len(name) :]
        return ids

    def count(self, text: str) -> int:
        """Tokens of `text` as shown here: `<s>` and `</s>` are the control tokens, the rest is
        encoded run by run (mistral-common itself never reads typed `<s>` as a control token)."""
        return len(self._pieces(text))

    def marker_ids(self, marker: str) -> tuple[bool, list[int]]:
        ids = self._pieces(marker)
        return len(ids) == 1 and self.raw.is_special(ids[0]), ids


# --- the formats on offer -----------------------------------------------------------------------

CHATML_MARKERS = (
    ("<|im_start|>", "Opens a turn; the role (system, user or assistant) follows on its line."),
    ("<|im_end|>", "Closes a turn. The model writes it when its reply is done, and stops."),
)
PHI3_MARKERS = (
    ("<s>", "Beginning of the text, written once at the very start."),
    ("<|user|>", "Opens a user turn."),
    ("<|assistant|>", "Opens an assistant turn; this template writes it after every user turn."),
    ("<|end|>", "Closes a turn (user or assistant)."),
    ("<|system|>", "In Phi-3's vocabulary, but this template never writes it."),
)
INST_MARKERS = (
    ("[INST]", "Opens a user turn. Plain text, not a special token."),
    ("[/INST]", "Closes a user turn; the assistant's answer follows. Plain text."),
)
LLAMA2_MARKERS = (
    ("<s>", "Beginning of sequence: starts each exchange (a user turn and its answer)."),
    ("</s>", "End of sequence: closes each exchange, after the assistant's answer."),
    *INST_MARKERS,
    ("<<SYS>>", "Opens the system prompt, inside the first user turn. Plain text."),
    ("<</SYS>>", "Closes the system prompt; a blank line, then the first user turn. Plain text."),
)
MISTRAL_MARKERS = (
    ("<s>", "Beginning of sequence, written once at the very start (Llama 2 repeats it)."),
    ("</s>", "End of sequence: closes each assistant answer."),
    *INST_MARKERS,
)
GEMMA_MARKERS = (
    ("<bos>", "Beginning of the text, written once at the very start."),
    ("<start_of_turn>", "Opens a turn; the role (user or model) follows on its line."),
    ("<end_of_turn>", "Closes a turn."),
)

SYSTEM_SMOLLM2 = (
    "Its own turn, first. With no system prompt the template adds SmolLM2's default one."
)
SYSTEM_QWEN2 = "Its own turn, first. With no system prompt the template adds a default one."
SYSTEM_PHI3 = (
    "No system role: this template writes only user and assistant turns, so a system prompt is "
    "left out entirely (the model never reads it)."
)
SYSTEM_LLAMA2 = (
    "No turn of its own: folded into the first user turn, between `<<SYS>>` and `<</SYS>>`, "
    "inside the first `[INST]`."
)
SYSTEM_MISTRAL = (
    "No turn of its own and no markers: folded into the first user turn, followed by a blank line."
)
SYSTEM_GEMMA = "No system role: the template puts it at the start of the first user turn."

# What a model makes of another family's format: the marker, and the family whose tokenizer reads
# it (as plain text) in the note under the table.
FOREIGN = {
    "chatml-smollm2": ("<|im_start|>", "llama-2"),
    "chatml-qwen2": ("<|im_start|>", "phi-3"),
    "phi-3": ("<|user|>", "chatml-qwen2"),
    "llama-2": ("[INST]", "chatml-smollm2"),
    "mistral": ("<<SYS>>", "mistral"),
    "gemma-3": ("<start_of_turn>", "llama-2"),
}


# GGUF metadata value types (llama.cpp's gguf.md) and the byte size of the fixed-size ones.
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_string(data: bytes, key: str) -> str | None:
    """The string stored under `key` in a GGUF file's metadata (None when it has none).

    Reads only the header: the `gguf` package's reader builds an object for each of Qwen2's
    151,643 tokens and 151,387 merges first (~20 s), where skipping over them takes a blink.

    >>> import struct
    >>> def text(s): return struct.pack("<Q", len(s)) + s
    >>> header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    >>> gguf_string(header + text(b"a.b") + struct.pack("<I", 8) + text(b"hi"), "a.b")
    'hi'
    """
    import struct

    if data[:4] != b"GGUF":
        raise ValueError("data is not a GGUF file (no GGUF magic)")
    _version, _tensors, count = struct.unpack_from("<IQQ", data, 4)
    at = 24

    def string() -> bytes:
        nonlocal at
        (length,) = struct.unpack_from("<Q", data, at)
        at += 8 + length
        return data[at - length : at]

    def skip(kind: int) -> None:
        nonlocal at
        if kind == _GGUF_STRING:
            string()
        elif kind == _GGUF_ARRAY:
            item, items = struct.unpack_from("<IQ", data, at)
            at += 12
            if item in _GGUF_SIZES:
                at += _GGUF_SIZES[item] * items
            else:
                for _ in range(items):
                    skip(item)
        else:
            at += _GGUF_SIZES[kind]

    for _ in range(count):
        name = string().decode("utf-8")
        (kind,) = struct.unpack_from("<I", data, at)
        at += 4
        if name == key and kind == _GGUF_STRING:
            return string().decode("utf-8")
        skip(kind)
    return None


# How llama-cpp-python's `format_llama2` (llama_cpp/llama_chat_format.py, in the sdist the packs
# download) differs from Meta's reference; the tests check each point on its real output.
LLAMA_CPP_PYTHON_DIFFERENCES = (
    "With a system prompt, no `<s>` before the first exchange (Meta's code starts every "
    "exchange with one); without one, the text starts with a space before its `<s>`.",
    "One space instead of a blank line between `<</SYS>>` and the first user message.",
    "No space between `[/INST]` and the assistant's answer, nor between `[INST]` and a later user "
    "message, and two spaces before a later `[/INST]`.",
    "Messages are used as typed: Meta's code strips the spaces around each one.",
)


def _gguf_template(family: str) -> str:
    """The chat template stored in a llama.cpp vocabulary file (`tokenizer.chat_template`)."""
    from llmlab.tokenization import _gguf

    template = gguf_string(_gguf.gguf_path(family).read_bytes(), "tokenizer.chat_template")
    if template is None:
        raise ValueError(f"family={family!r}: its GGUF vocabulary has no chat template")
    return template


def _gguf_tokenizer(family: str, template: str | None, **tokens: str) -> Any:
    """A transformers tokenizer for a llama.cpp vocabulary (the zoo's tokenizer.json)."""
    from transformers import PreTrainedTokenizerFast

    from llmlab.tokenization import _gguf

    path = _gguf.convert(family)
    return PreTrainedTokenizerFast(tokenizer_file=str(path), chat_template=template, **tokens)


def _smollm2() -> ChatFormat:
    from llmlab import models

    folder = models.converted_dir("smollm2-135m-instruct")
    if not (folder / "tokenizer.json").is_file():
        raise ValueError(
            "SmolLM2's tokenizer is not prepared yet: open a page that uses the chat model, "
            "or run python -m llmlab setup"
        )
    source = "SmolLM2-135M-Instruct's tokenizer (the lab's chat model)"
    return TemplateFormat(
        "chatml-smollm2",
        "ChatML · SmolLM2",
        source,
        "SmolLM2",
        SYSTEM_SMOLLM2,
        CHATML_MARKERS,
        models.load_tokenizer_dir(folder),
    )


def _qwen2() -> ChatFormat:
    tokenizer = _gguf_tokenizer(
        "qwen2", _gguf_template("qwen2"), bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    source = "the chat template in llama.cpp's Qwen2 vocabulary file (ggml-vocab-qwen2.gguf)"
    return TemplateFormat(
        "chatml-qwen2", "ChatML · Qwen2", source, "Qwen2", SYSTEM_QWEN2, CHATML_MARKERS, tokenizer
    )


def _phi3() -> ChatFormat:
    tokenizer = _gguf_tokenizer(
        "phi-3",
        _gguf_template("phi-3"),
        bos_token="<s>",
        eos_token="<|endoftext|>",
        unk_token="<unk>",
    )
    source = "the chat template in llama.cpp's Phi-3 vocabulary file (ggml-vocab-phi-3.gguf)"
    return TemplateFormat("phi-3", "Phi-3", source, "Phi-3", SYSTEM_PHI3, PHI3_MARKERS, tokenizer)


def _llama2() -> ChatFormat:
    tokenizer = _gguf_tokenizer(
        "llama-spm", None, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    source = (
        "Meta's reference code (llama/generation.py, chat_completion); no Jinja template for "
        "it ships offline"
    )
    return Llama2Format(
        "llama-2",
        "Llama 2",
        source,
        "Llama (SentencePiece, llama.cpp)",
        SYSTEM_LLAMA2,
        LLAMA2_MARKERS,
        tokenizer,
    )


def _mistral() -> ChatFormat:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    path = assets.pack_path("mistral-tokenizer", "tokenizer.model.v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = MistralTokenizer.from_file(str(path))
    source = (
        "mistral-common's instruct encoding (encode_chat_completion), Mistral 7B's v1 tokenizer"
    )
    return MistralFormat(
        "mistral",
        "Mistral",
        source,
        "Mistral 7B (SentencePiece)",
        SYSTEM_MISTRAL,
        MISTRAL_MARKERS,
        tokenizer,
    )


GEMMA_OFFLINE = (
    f"Gemma 3's chat template ships with {GEMMA_HUB_ID} on the Hugging Face Hub, which this copy "
    "of the lab cannot reach now. The offline Gemma 3 270M is the base model: its files carry no "
    "chat template, since it was never tuned to chat."
)


def _gemma() -> ChatFormat:
    from llmlab import registry

    if not registry.hub_available():
        raise ValueError(GEMMA_OFFLINE)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(GEMMA_HUB_ID)
    except Exception as error:  # noqa: BLE001 - gated, missing or unreachable: say so
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"Gemma 3's chat template could not be read from {GEMMA_HUB_ID} on the Hub "
            f"({first[:200]})."
        ) from error
    source = f"the tokenizer of {GEMMA_HUB_ID} on the Hugging Face Hub"
    return TemplateFormat(
        "gemma-3", "Gemma 3", source, "Gemma 3", SYSTEM_GEMMA, GEMMA_MARKERS, tokenizer
    )


LOADERS = {
    "chatml-smollm2": ("ChatML · SmolLM2", _smollm2),
    "chatml-qwen2": ("ChatML · Qwen2", _qwen2),
    "llama-2": ("Llama 2", _llama2),
    "mistral": ("Mistral", _mistral),
    "phi-3": ("Phi-3", _phi3),
    "gemma-3": ("Gemma 3", _gemma),
}


def load_format(key: str) -> ChatFormat:
    """One format by key (see `LOADERS`); ValueError or AssetError saying why it is not there."""
    if key not in LOADERS:
        raise ValueError(f"format={key!r} is unknown; available: {', '.join(LOADERS)}")
    return LOADERS[key][1]()


def load_formats() -> list[ChatFormat | Unavailable]:
    """Every format, in order; one that cannot be loaded here comes as `Unavailable`, with why."""
    loaded: list[ChatFormat | Unavailable] = []
    for key, (title, _) in LOADERS.items():
        try:
            loaded.append(load_format(key))
        except (ValueError, assets.AssetError, OSError, ImportError) as error:
            loaded.append(Unavailable(key, title, str(error)))
    return loaded


# --- the table under the formats ----------------------------------------------------------------


def marker_table(formats: Sequence[ChatFormat]) -> list[Marker]:
    """Every marker each format writes, as its own tokenizer reads it."""
    rows = []
    for chat_format in formats:
        for marker, meaning in chat_format.markers:
            special, ids = chat_format.marker_ids(marker)
            rows.append(Marker(chat_format.title, marker, special, ids, meaning))
    return rows


def foreign_note(chat_format: ChatFormat, formats: Sequence[ChatFormat]) -> str:
    """One line on what a model of another family makes of this format (Markdown).

    The count is the other family's tokenizer's own.
    """
    marker, other_key = FOREIGN[chat_format.key]
    others = {f.key: f for f in formats}
    other = others.get(other_key)
    code = chat._inline_code(marker)
    if chat_format.key == "mistral":
        return (
            "Mistral's format is Llama 2's without the system block: the two read each other's "
            f"prompts almost alike, but {code} in a Llama 2 prompt is ordinary text to Mistral "
            f"({chat_format.count(marker)} tokens), not a system prompt it was tuned on."
        )
    if other is None:
        return f"Another family never saw {code} in tuning, so to it this is just text."
    special, ids = other.marker_ids(marker)
    if chat_format.key == "llama-2":
        return (
            f"{code} is plain text even here, so any model can read it, but only a model tuned on "
            f"it treats it as a turn: to {other.title} it is {len(ids)} ordinary tokens inside "
            "what looks like one long user message."
        )
    as_what = "a special token it knows" if special else f"{len(ids)} ordinary tokens of text"
    return (
        f"Given to {other.title}, {code} is {as_what}: the model never learnt it as a turn "
        "boundary, so it may continue the pattern, write both sides of the chat, or not stop."
    )


def render_all(
    formats: Sequence[ChatFormat | Unavailable], messages: Sequence[Mapping[str, str]]
) -> list[FormatRendering | Unavailable]:
    """The conversation in every format; a format that fails on it comes as `Unavailable`."""
    results: list[FormatRendering | Unavailable] = []
    for chat_format in formats:
        if isinstance(chat_format, Unavailable):
            results.append(chat_format)
            continue
        try:
            results.append(chat_format.render(messages))
        except ValueError as error:
            results.append(Unavailable(chat_format.key, chat_format.title, str(error)))
    return results
