"""The app's pages, in their order: the router builds its navigation from them, and Home's
table of pages lists them, so a new page cannot be left out of either.

>>> [page.title for page in PAGES][:3]
['Home', 'Tokenizers', 'Architecture']
>>> pages_table().splitlines()[:2]
['| Page | What you will see |', '| --- | --- |']
>>> [page.title for page in PAGES if f"| **{page.title}** |" not in pages_table()]
['Home']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabPage:
    """One page of the app."""

    path: str  # the page's script, from the app's folder (Streamlit's `st.Page` reads it)
    title: str  # in the navigation and as the page's heading
    icon: str  # a Material icon, as Streamlit writes it
    summary: str = ""  # what a visitor will see there: its line in Home's table
    default: bool = False  # the page a bare address opens


PAGES: tuple[LabPage, ...] = (
    LabPage("app_pages/home.py", "Home", ":material/home:", default=True),
    LabPage(
        "app_pages/tokenizers.py", "Tokenizers", ":material/segment:",
        "How text is cut into tokens, by hand-built tokenizers and by real ones "
        "(GPT-2, GPT-4, Llama, Gemma...).",
    ),
    LabPage(
        "app_pages/architecture.py", "Architecture", ":material/account_tree:",
        "What is inside a model: embeddings, attention, MLP blocks, every parameter counted.",
    ),
    LabPage(
        "app_pages/next_token.py", "Next-Token", ":material/bar_chart:",
        "The scores (logits) for the next token, turned into probabilities, reshaped by "
        "temperature, top-k and top-p.",
    ),
    LabPage(
        "app_pages/decoding.py", "Decoding", ":material/route:",
        "How those probabilities become text: greedy, sampling, beam search, one token at a time.",
    ),
    LabPage(
        "app_pages/chat_vs_base.py", "Chat vs Base", ":material/forum:",
        "Why an instruction-tuned model answers while a base model just continues your text.",
    ),
    LabPage(
        "app_pages/embeddings.py", "Embeddings", ":material/scatter_plot:",
        "How words and sentences become vectors: texts that mean similar things get similar "
        "numbers, which search and classification use.",
    ),
    LabPage(
        "app_pages/training.py", "Training", ":material/model_training:",
        "A tiny GPT pre-trained in front of you, from gibberish to words; then use it on the "
        "other pages.",
    ),
    LabPage(
        "app_pages/class.py", "Class", ":material/groups:",
        "A live lesson: students join with a code and guess what the model will do; the "
        "projected screen shows the class's answers beside the model's.",
    ),
)  # fmt: skip


def pages_table(pages: tuple[LabPage, ...] = PAGES) -> str:
    """Home's table of pages, in Markdown: one row for every page but Home itself."""
    rows = [f"| **{page.title}** | {page.summary} |" for page in pages if not page.default]
    return "\n".join(["| Page | What you will see |", "| --- | --- |", *rows])
