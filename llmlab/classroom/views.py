"""What the Class page shows, as plain data: class links, the QR code, the join code spaced out
for a projector, a student's own seed, and user text made safe for Markdown. No Streamlit.

>>> page = page_address("http://192.168.1.20:8501/class?code=K7F2QX")
>>> join_link(page, "K7F2QX")
'http://192.168.1.20:8501/class?code=K7F2QX'
>>> spaced_code("K7F2QX")
'K7F 2QX'
"""

from __future__ import annotations

import hashlib
import io
import re
from urllib.parse import urlencode, urlsplit, urlunsplit

import pandas as pd
import plotly.graph_objects as go

PAGE_PATH = "class"  # the Class page's URL path (its file is app_pages/class.py)
POLL_SECONDS = 2.0  # how often a student's page and the projected view ask the store for news
MAX_CODE_CHARS = 16  # a join code as typed, spaces and dashes included
MAX_SECRET_CHARS = 100  # a teacher key or a student token, as a link carries it
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


def page_address(current_url: str) -> str:
    """The Class page's address, without a query: every class link starts from it.

    `current_url` is the address the browser shows (Streamlit's `st.context.url`); a page opened
    on its own (as tests do) has none, and the links are then relative.

    >>> page_address("http://lab.example:8501/class?code=K7F2QX&key=secret")
    'http://lab.example:8501/class'
    >>> page_address("https://lab.example/school/")
    'https://lab.example/school/class'
    >>> page_address("")
    ''
    """
    if not current_url:
        return ""
    parts = urlsplit(current_url)
    path = parts.path
    if path.rstrip("/").rsplit("/", 1)[-1] != PAGE_PATH:
        path = path.rstrip("/") + "/" + PAGE_PATH
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


def class_link(page: str, **params: str) -> str:
    """The Class page's address with `params` in its query (`page` from `page_address`).

    >>> class_link("http://lab.example/class", code="K7F2QX", student="a-b_c")
    'http://lab.example/class?code=K7F2QX&student=a-b_c'
    >>> class_link("", code="K7F2QX")
    '?code=K7F2QX'
    """
    return f"{page}?{urlencode(params)}"


def join_link(page: str, code: str) -> str:
    """The link students open to join: it fills in the code, never anyone's secret."""
    return class_link(page, code=code)


def teacher_link(page: str, code: str, key: str) -> str:
    """The link that runs the lesson: whoever holds it can open, close and reveal rounds."""
    return class_link(page, code=code, key=key)


def student_link(page: str, code: str, token: str) -> str:
    """A student's own link: opening it again (a reload, another tab) is the same student."""
    return class_link(page, code=code, student=token)


def is_local_address(page: str) -> bool:
    """Whether a link names this computer itself, which students' devices cannot open.

    >>> is_local_address("http://localhost:8501/class")
    True
    >>> is_local_address("http://192.168.1.20:8501/class")
    False
    """
    return (urlsplit(page).hostname or "") in LOCAL_HOSTS


def normalise_code(typed: str) -> str:
    """A join code as the store knows it: spaces and dashes dropped, letters in capitals.

    >>> normalise_code(" k7f-2qx ")
    'K7F2QX'
    >>> normalise_code("<script>")
    '<SCRIPT>'
    """
    return re.sub(r"[\s\-]+", "", typed).upper()


def spaced_code(code: str) -> str:
    """The code in groups of three, easier to read from the back of a room.

    >>> spaced_code("ABCD")
    'ABC D'
    """
    return " ".join(code[i : i + 3] for i in range(0, len(code), 3))


def qr_png(text: str, scale: int = 14) -> bytes:
    """A QR code for `text` as a PNG: black on white, `scale` pixels per module, a quiet zone of
    4 modules. A class link gives a 37-module code (version 3): 630 px at the default scale,
    readable by a phone across a classroom when projected at half the screen's height.

    >>> qr_png("http://lab.example/class?code=K7F2QX")[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    import segno

    code = segno.make(text, error="m", micro=False)
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=scale, border=4, dark="black", light="white")
    return buffer.getvalue()


def student_seed(token: str) -> int:
    """A student's own sampling seed, the same on every reload (taken from their token).

    >>> student_seed("abc") == student_seed("abc") != student_seed("abd")
    True
    >>> 0 <= student_seed("abc") < 2**31
    True
    """
    return int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:4], "big") % 2**31


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def markdown_text(text: str) -> str:
    """`text` for a Markdown element, shown exactly as typed: every character Markdown (or
    Streamlit's math, `$...$`, and icons, `:name:`) would act on is escaped, and line breaks
    become spaces, so a name or a title never turns into a link, a heading or markup.

    >>> markdown_text("[click](javascript:alert(1))")
    '\\\\[click\\\\]\\\\(javascript\\\\:alert\\\\(1\\\\)\\\\)'
    >>> markdown_text("a\\nb")
    'a b'
    """
    flat = re.sub(r"[\r\n\u2028\u2029]+", " ", text)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def looks_like_code(code: str) -> bool:
    """Whether `code` (normalised) could be a class code at all: the store's letters and length.
    Anything else is refused on the page without asking the database.

    >>> looks_like_code("K7F2QX"), looks_like_code("K7F2Q0"), looks_like_code("<SCRIPT>")
    (True, False, False)
    """
    from llmlab.classroom.store import CODE_ALPHABET, CODE_LENGTH

    return len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code)


def class_guesses(table: pd.DataFrame) -> pd.DataFrame:
    """The class's side of `activities.class_guess_table` alone, for the projected view before
    the reveal: only what students guessed, most chosen first, and nothing of the model's (no
    probabilities, no star on its top token) that would give the answer away.

    >>> table = pd.DataFrame({"guess": [" Paris", " the", " Lyon"],
    ...     "model_probability": [0.5, 0.1, 0.01], "model_rank": [1, 2, None],
    ...     "students": [2, 0, 3], "class_share": [0.4, 0.0, 0.6], "top": [True, False, False]})
    >>> class_guesses(table)[["guess", "students", "top"]].values.tolist()
    [[' Lyon', 3, False], [' Paris', 2, False]]
    """
    guessed = table[table["students"] > 0].sort_values("students", ascending=False, kind="stable")
    return guessed.assign(model_probability=float("nan"), top=False).reset_index(drop=True)


def class_guess_figure(table: pd.DataFrame) -> go.Figure:
    """The class's guesses as bars, without the model's (`class_guesses` of the table)."""
    from llmlab.classroom.charts import guess_chart

    figure = guess_chart(class_guesses(table))
    figure.data = figure.data[:1]  # the class's bars only
    return figure
