"""Helpers for AppTest tests that open a page file directly, as a shared link would."""

from __future__ import annotations

from pathlib import Path

# A page file run on its own puts app_pages/ first on sys.path, where app_pages/tokenizers.py
# would stand in for Hugging Face's `tokenizers` package: import the real one first.
import tokenizers  # noqa: F401
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def page_from_link(
    page: str, params: dict[str, str | list[str]], runs: int = 1, timeout: float = 240
) -> AppTest:
    """`app_pages/<page>.py` opened from a link carrying `params`: the first page of a new
    session, so it reads the link."""
    at = AppTest.from_file(str(ROOT / "app_pages" / f"{page}.py"), default_timeout=timeout)
    for name, value in params.items():
        at.query_params[name] = value
    for _ in range(runs):
        at.run()
    return at


def html_bodies(at: AppTest) -> list[str]:
    """Every body the browser would read as HTML: st.html and markdown with HTML allowed."""
    bodies = [h.value for h in at.get("html")]
    for kind in ("markdown", "caption"):
        bodies += [m.value for m in at.get(kind) if m.proto.allow_html]
    return bodies
