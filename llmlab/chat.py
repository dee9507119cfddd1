"""Chat templates and base-vs-chat runs: what post-training changes, as plain data.

A chat model never sees "messages": it sees one long string that its chat template builds from
them, with special tokens marking where each turn starts and ends. A base model has no such
format; it only continues text, so we either give it the text as is or frame it as a dialogue.

    >>> from llmlab import models                                         # doctest: +SKIP
    >>> tok = models.load("smollm2-135m-instruct").tokenizer                # doctest: +SKIP
    >>> render_chat(tok, [{"role": "user", "content": "Hi"}]).text[-22:]  # doctest: +SKIP
    'Hi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Running a prepared input lives in llmlab.generation.chat_runs; its names are part of this module's API too.
from llmlab.generation.chat_runs import (
    Comparison,
    DecodingSettings,
    ModelOutput,
    PreparedRun,
    _settings_from,
    run,
)
from llmlab.generation.chat_runs import RunStream as RunStream
from llmlab.rendered_chat import RenderedChat, Segment
from llmlab.tokenization.pieces import require_utf8

ROLES = ("system", "user", "assistant")
BASE_FRAMES = ("plain", "few-shot")
MAX_MESSAGE_TOKENS = 512  # a longer chat message is cut to this many tokens (with a notice)

# The "User:/Assistant:" frame: two worked exchanges show a base model the pattern to continue.
FEW_SHOT_HEADER = "The following is a conversation between a user and a helpful assistant."
FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
)
# A base model in the frame happily writes the user's next line too; cut it there.
FEW_SHOT_STOP = ("\nUser:",)


# --- what the model sees ------------------------------------------------------------------------


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Messages as plain {"role", "content"} dicts; ValueError naming the first bad one."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(
            f"messages={messages!r:.60} must be a list of {{'role': ..., 'content': ...}} dicts"
        )
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(
                f"messages[{index}]={message!r:.60} must be a dict with 'role' and 'content'"
            )
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(f"messages[{index}].role={role!r} is not allowed; use one of {ROLES}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{index}].content={content!r:.60} must be a string")
        clean.append({"role": role, "content": content})
    return clean


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def require_chat_template(tokenizer: Any, name: str = "") -> None:
    """Raise a ValueError that explains, in plain words, why a base model cannot chat."""
    if has_chat_template(tokenizer):
        return
    who = f"model={name!r}" if name else "this tokenizer"
    raise ValueError(
        f"{who} has no chat template: it is a base model, only pre-trained to continue text. "
        "It was never taught a conversation format (no special tokens for turns), so there is "
        "nothing to fill the messages into. Choose an instruction-tuned (chat) model, or give "
        "the base model a plain or 'User:/Assistant:' few-shot prompt instead."
    )


def special_ids(tokenizer: Any) -> set[int]:
    """Ids of the special tokens: the named ones (bos, eos, ...) and added tokens marked special."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return ids


def typed_special_tokens(text: str, tokenizer: Any) -> list[tuple[str, int]]:
    """Special tokens written out in `text` itself, as (token, id), each once, in order.

    A tokenizer turns the literal text of a special token, such as ``<|im_end|>``, into that
    special token, wherever it comes from: typing it into a prompt can end a turn early or fake
    a new one. Nothing is added here (``add_special_tokens=False``), so only typed ones count.
    """
    if not text:
        return []
    marked = special_ids(tokenizer)
    found: dict[int, str] = {}
    for token_id in tokenizer(text, add_special_tokens=False)["input_ids"]:
        if token_id in marked and token_id not in found:
            found[token_id] = tokenizer.convert_ids_to_tokens(token_id)
    return [(token, token_id) for token_id, token in found.items()]


def _inline_code(text: str) -> str:
    """`text` as Markdown inline code, whatever backticks it holds.

    >>> _inline_code("a`b")
    '`` a`b ``'
    """
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def typed_special_notice(found: Sequence[tuple[str, int]]) -> str:
    """A plain-words note for special tokens typed into a prompt or a message (Markdown).

    >>> typed_special_notice([("<|im_end|>", 2)])[:39]
    'Your text contains `<|im_end|>` (id 2),'
    """
    names = ", ".join(f"{_inline_code(token)} (id {token_id})" for token, token_id in found)
    one = len(found) == 1
    return (
        f"Your text contains {names}, which the tokenizer reads as "
        f"{'a special token' if one else 'special tokens'}, not as the characters you typed. "
        f"The model cannot tell {'it' if one else 'them'} from the ones its tokenizer or chat "
        "template puts there: a typed end-of-turn token can end a turn early or start a fake "
        "one. Chat apps usually remove such text; this lab keeps it so that you can see the "
        "effect (highlighted in the model's input)."
    )


def _segments(text: str, spans: list[tuple[int, int]], messages: list[dict[str, str]]) -> list:
    """Cut `text` into special / content / template stretches.

    Message contents are found in order, each after the previous one, so a word that also occurs
    in the template (such as "assistant") is not mistaken for content.
    """
    kinds = ["template"] * len(text)
    cursor = 0
    for message in messages:
        content = message["content"]
        if not content:
            continue
        found = text.find(content, cursor)
        if found < 0:  # a template may rewrite content (strip it, say); then we leave it unmarked
            continue
        kinds[found : found + len(content)] = ["content"] * len(content)
        cursor = found + len(content)
    for start, end in spans:
        kinds[start:end] = ["special"] * (end - start)
    segments: list[Segment] = []
    for char, kind in zip(text, kinds, strict=True):
        if segments and segments[-1].kind == kind:
            segments[-1] = Segment(segments[-1].text + char, kind)
        else:
            segments.append(Segment(char, kind))
    return segments


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    name: str = "",
) -> RenderedChat:
    """The text a chat model sees for `messages`, with its tokens and special tokens marked.

    The text is exactly what `tokenizer.apply_chat_template(..., tokenize=False)` gives. The ids
    come from tokenizing that text without adding special tokens again (the template already wrote
    them), as transformers' chat pipelines do.

        >>> rendered = render_chat(smollm2_tokenizer, [{"role": "user", "content": "Hi"}])
        ... # doctest: +SKIP
        >>> [t for t, s in zip(rendered.tokens, rendered.special) if s][:2]  # doctest: +SKIP
        ['<|im_start|>', '<|im_end|>']
    """
    require_chat_template(tokenizer, name)
    clean = validate_messages(messages)
    text = tokenizer.apply_chat_template(
        clean, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    offsets = [tuple(pair) for pair in encoded["offset_mapping"]]
    marked = special_ids(tokenizer)
    special = [token_id in marked for token_id in ids]
    # A character split over several byte-level tokens (an emoji, a Korean syllable) gives each of
    # them the same span; the first one shows the character, the rest show "" so that
    # "".join(tokens) == text.
    tokens, covered = [], 0
    for start, end in offsets:
        tokens.append(text[max(start, covered) : end])
        covered = max(covered, end)
    spans = [offset for offset, is_special in zip(offsets, special, strict=True) if is_special]
    return RenderedChat(text, ids, tokens, special, _segments(text, spans, clean))


def base_prompt(prompt: str, frame: str = "plain") -> str:
    """The text a base model gets: the prompt as is, or framed as a "User:/Assistant:" dialogue.

    >>> base_prompt("Hi")
    'Hi'
    >>> base_prompt("Hi", frame="few-shot").splitlines()[-2:]
    ['User: Hi', 'Assistant:']
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt={prompt!r:.60} must be a string")
    if frame == "plain":
        return prompt
    if frame == "few-shot":
        shots = "".join(f"User: {q}\nAssistant: {a}\n\n" for q, a in FEW_SHOT_EXAMPLES)
        return f"{FEW_SHOT_HEADER}\n\n{shots}User: {prompt.strip()}\nAssistant:"
    raise ValueError(f"frame={frame!r} is not a base prompt frame; allowed: {BASE_FRAMES}")


# --- messages and history -----------------------------------------------------------------------


@dataclass(frozen=True)
class MessageCheck:
    """A typed chat message after checking: the text to send (None: nothing) and notices."""

    text: str | None
    notices: list[str] = field(default_factory=list)


def check_message(
    text: str | None, tokenizer: Any, max_tokens: int = MAX_MESSAGE_TOKENS
) -> MessageCheck:
    """Ignore an empty message (with a hint) and cut a very long one (with a notice).

    >>> check_message("   ", None).notices
    ['The message is empty: type something, then press Enter.']
    """
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r} must be a whole number of at least 1")
    if text is None or not text.strip():
        return MessageCheck(None, ["The message is empty: type something, then press Enter."])
    text = require_utf8(text.strip(), "message")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    notices = []
    if len(ids) > max_tokens:
        text = tokenizer.decode(ids[:max_tokens]).rstrip("\ufffd")  # no half of a character
        notices.append(
            f"The message was {len(ids):,} tokens long; only the first {max_tokens:,} were kept "
            "so that the conversation still fits in what the model can read."
        )
    typed = typed_special_tokens(text, tokenizer)
    if typed:
        notices.append(typed_special_notice(typed))
    return MessageCheck(text, notices)


@dataclass(frozen=True)
class ChatTurn:
    """What goes to the chat model for one new user message."""

    messages: list[dict[str, str]]  # system (if any) + the history kept + the new user message
    rendered: RenderedChat
    dropped: int  # how many of the oldest history messages were left out
    budget: int  # tokens the prompt may use (context or token budget, minus the reply)
    notices: list[str] = field(default_factory=list)

    @property
    def prompt_ids(self) -> list[int]:
        return self.rendered.ids


def prepare_turn(
    tokenizer: Any,
    history: Sequence[Mapping[str, Any]],
    user_message: str,
    system: str = "",
    context_length: int = 8192,
    max_new_tokens: int = 64,
    token_budget: int | None = None,
    name: str = "",
) -> ChatTurn:
    """The messages for the next reply, dropping the oldest turns when they no longer fit.

    The prompt may use `min(context_length, token_budget) - max_new_tokens` tokens (room is kept
    for the reply). Old messages go first, oldest first; the system prompt is never dropped.
    An empty `system` leaves the system turn to the template (some add a default one).
    """
    require_chat_template(tokenizer, name)
    for argument, value in (("context_length", context_length), ("max_new_tokens", max_new_tokens)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument}={value!r} must be a whole number of at least 1")
    if token_budget is not None and (not isinstance(token_budget, int) or token_budget < 1):
        raise ValueError(f"token_budget={token_budget!r} must be a whole number of at least 1")
    if not isinstance(user_message, str) or not user_message.strip():
        raise ValueError("user_message is empty; type something to send")
    past = [m for m in validate_messages(history) if m["role"] != "system"]
    head = [{"role": "system", "content": system}] if system and system.strip() else []
    limit = min(context_length, token_budget) if token_budget else context_length
    budget = limit - max_new_tokens
    new = [{"role": "user", "content": user_message}]
    dropped = 0
    while True:
        messages = head + past[dropped:] + new
        rendered = render_chat(tokenizer, messages, name=name)
        if rendered.n_tokens <= budget or dropped >= len(past):
            break
        # Drop a whole exchange (user + assistant) so the kept history still starts with a user.
        dropped += 2 if dropped + 1 < len(past) and past[dropped]["role"] == "user" else 1
    if rendered.n_tokens > budget:
        raise ValueError(
            f"The system prompt and the new message need {rendered.n_tokens:,} tokens, more than "
            f"the {budget:,} allowed (token_budget={limit:,} minus max_new_tokens="
            f"{max_new_tokens:,} kept for the reply); shorten the system prompt or the message."
        )
    notices = []
    if dropped:
        notices.append(
            f"The conversation no longer fits in {budget:,} tokens, so the oldest {dropped} "
            f"message{'s' if dropped != 1 else ''} {'were' if dropped != 1 else 'was'} left out of "
            "what the model sees. The system prompt is always kept. The model has no memory "
            "besides this text: it cannot recall what was left out."
        )
    return ChatTurn(messages, rendered, dropped, budget, notices)


# --- inputs for both models (runs: llmlab.generation.chat_runs) --------------------------------------------


def _loaded(model: Any) -> Any:
    if isinstance(model, str):
        from llmlab import models

        return models.load(model)
    return model


def _check_prompt(prompt: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt is empty; type a prompt or pick a ready one")
    require_utf8(prompt)


def prepare_base(loaded: Any, prompt: str, frame: str = "plain") -> PreparedRun:
    """A base model's run: the prompt as plain text to continue, or in the few-shot frame."""
    _check_prompt(prompt)
    text = base_prompt(prompt, frame)
    # Default special tokens on: Gemma's tokenizer adds its <bos>, as in pre-training.
    ids = list(loaded.tokenizer(text)["input_ids"])
    how = (
        "the prompt as plain text to continue"
        if frame == "plain"
        else "the prompt inside a 'User:/Assistant:' few-shot frame"
    )
    stop = list(FEW_SHOT_STOP) if frame == "few-shot" else None
    return PreparedRun(loaded.name, "base", how, text, ids, stop)


def prepare_chat(
    loaded: Any, prompt: str, system: str = "", use_template: bool = True
) -> PreparedRun:
    """A chat model's run: the prompt wrapped by its chat template, or raw (template off)."""
    _check_prompt(prompt)
    if not use_template:
        ids = list(loaded.tokenizer(prompt)["input_ids"])
        return PreparedRun(loaded.name, "chat", "the raw prompt, no chat template", prompt, ids)
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    messages.append({"role": "user", "content": prompt})
    rendered = render_chat(loaded.tokenizer, messages, name=loaded.name)
    how = "the prompt as a user turn in the chat template"
    return PreparedRun(loaded.name, "chat", how, rendered.text, rendered.ids, None, rendered)


def compare(
    base_model: Any,
    chat_model: Any,
    prompt: str,
    settings: DecodingSettings | Mapping[str, Any] | None = None,
    frame: str = "plain",
    system: str = "",
    use_template: bool = True,
) -> Comparison:
    """Run a base and a chat model on one prompt with the same decoding settings and seed.

    >>> both = compare("gemma-3-270m", "smollm2-135m-instruct", "What is 2+2?")  # doctest: +SKIP
    >>> "4" in both.chat.text                                                   # doctest: +SKIP
    True
    """
    settings = settings if settings is not None else DecodingSettings()
    base, chat = _loaded(base_model), _loaded(chat_model)
    base_run = prepare_base(base, prompt, frame)
    chat_run = prepare_chat(chat, prompt, system, use_template)
    return Comparison(
        prompt,
        settings if isinstance(settings, DecodingSettings) else _settings_from(settings),
        ModelOutput(base_run, run(base, base_run, settings)),
        ModelOutput(chat_run, run(chat, chat_run, settings)),
    )


def turn_run(turn: ChatTurn, model_name: str) -> PreparedRun:
    """A prepared chat turn as a run (for `run` / `stream`)."""
    how = f"the conversation ({len(turn.messages)} messages) in the chat template"
    return PreparedRun(
        model_name, "chat", how, turn.rendered.text, turn.rendered.ids, None, turn.rendered
    )


# --- showing what a model sees ------------------------------------------------------------------

SEGMENT_STYLE = {  # Okabe-Ito tints: orange for special tokens, sky blue for template text
    "special": "background:#E69F00;color:#000;border-radius:3px;padding:0 2px;font-weight:600",
    "template": "background:#D6EAF8;color:#0b3d62;border-radius:3px",
    "content": "",
}


def run_segments(prepared: PreparedRun, tokenizer: Any, user_text: str = "") -> list[Segment]:
    """A prepared run's input as special / template / content stretches, for highlighting.

    The chat template's render is used as is. For other prompts, special tokens the tokenizer
    adds without showing them in the text (Gemma's <bos>) come first, and the few-shot frame
    around `user_text` counts as template text.
    """
    if prepared.rendered is not None:
        return list(prepared.rendered.segments)
    marked = special_ids(tokenizer)
    segments = []
    for token_id in prepared.prompt_ids:  # leading special tokens are added, not typed
        if token_id not in marked:
            break
        segments.append(Segment(tokenizer.convert_ids_to_tokens(token_id), "special"))
    text = prepared.prompt_text
    found = text.find(user_text.strip()) if user_text.strip() else -1
    if found < 0 or text == user_text:
        return [*segments, *_mark_typed([Segment(text, "content")], tokenizer)]
    end = found + len(user_text.strip())
    pieces = [(text[:found], "template"), (text[found:end], "content"), (text[end:], "template")]
    return [*segments, *_mark_typed([Segment(p, k) for p, k in pieces if p], tokenizer)]


def _mark_typed(segments: list[Segment], tokenizer: Any) -> list[Segment]:
    """Split out the special tokens typed into the text, so they are highlighted as special."""
    typed = typed_special_tokens("".join(s.text for s in segments), tokenizer)
    if not typed:
        return segments
    pattern = re.compile("|".join(re.escape(token) for token, _ in typed))
    marked = []
    for segment in segments:
        start = 0
        for match in pattern.finditer(segment.text):
            if match.start() > start:
                marked.append(Segment(segment.text[start : match.start()], segment.kind))
            marked.append(Segment(match.group(), "special"))
            start = match.end()
        if start < len(segment.text):
            marked.append(Segment(segment.text[start:], segment.kind))
    return marked


def prompt_tokens(prepared: PreparedRun, tokenizer: Any) -> list[dict[str, Any]]:
    """Every token a prepared run feeds the model: position, id, text, and whether it is special.

    With a chat template the texts are the render's own (they join up to the exact text); for
    other prompts each id is decoded alone, so a character split over several byte-level tokens
    (an emoji) shows as U+FFFD, the replacement character, in each of its pieces.
    """
    marked = special_ids(tokenizer)
    if prepared.rendered is not None:
        texts = list(prepared.rendered.tokens)
    else:
        texts = [tokenizer.decode([token_id]) for token_id in prepared.prompt_ids]
    return [
        {"position": position, "id": token_id, "token": text, "special": token_id in marked}
        for position, (token_id, text) in enumerate(zip(prepared.prompt_ids, texts, strict=True))
    ]


def segments_html(segments: Sequence[Segment]) -> str:
    """Escaped HTML for segments: special tokens and template text tinted, newlines shown as ↵.

    >>> segments_html([Segment("<|im_end|>", "special"), Segment("<b>", "content")])[-15:]
    '&lt;b&gt;</pre>'
    """
    parts = []
    for segment in segments:
        # Escape first, then mark newlines: the user's text can never inject markup.
        body = html.escape(segment.text, quote=True).replace(
            "\n", "<span style='opacity:.45'>↵</span>\n"
        )
        style = SEGMENT_STYLE.get(segment.kind, "")
        parts.append(f"<span style='{style}'>{body}</span>" if style else body)
    return (
        "<pre style='white-space:pre-wrap;word-break:break-word;font-size:0.9rem;"
        "line-height:1.6;padding:0.6rem;border:1px solid #ddd;border-radius:6px'>"
        + "".join(parts)
        + "</pre>"
    )


def legend_html() -> str:
    """The colour key for `segments_html`, in the same styles."""
    special, template = SEGMENT_STYLE["special"], SEGMENT_STYLE["template"]
    return (
        "<div style='font-size:0.9rem;color:#555'>Exactly the text each model reads. "
        f"<span style='{special}'>Special tokens</span> are single tokens the tokenizer reserves "
        "(a chat app never shows them); "
        f"<span style='{template}'>template text</span> is added around your words; "
        "plain text is yours. ↵ marks a newline.</div>"
    )
