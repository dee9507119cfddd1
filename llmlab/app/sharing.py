"""Streamlit side of sharing and saving: links that carry a page's inputs, settings files,
and download buttons for tables and charts.

A page lists its inputs as `page_state` fields (the data: `page_state.PageInputs`, parsing,
encoding, settings files) and calls, in order:

    shared = sharing.PageSettings("decoding", fields)
    shared.restore()   # before the widgets: a shared link, else this session's last values
    ...widgets...
    shared.publish()   # after the widgets: the link in the address bar, the sidebar controls

A link is read once, on the first page a session opens (opening a link always starts a new
session); after that the widgets are the truth and the address bar follows them. Streamlit
forgets a widget's value when its page is left, so `publish` keeps a copy and `restore` puts it
back: coming back to a page finds it as it was left.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import streamlit as st

from llmlab import exports, page_state
from llmlab.page_state import Field, PageInputs

log = logging.getLogger("llmlab")

_STARTED = "_llmlab-session-started"
# Every page's fields, by page name, as last declared: tests sweep links over them.
DECLARED: dict[str, list[Field]] = {}


def _current_url() -> str:
    try:
        return st.context.url or ""
    except Exception:  # noqa: BLE001 - no browser (tests): a link without a host
        return ""


def _raw_query_string() -> str:
    """The link's query as the browser sent it, before Streamlit's own size limits."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    context = get_script_run_ctx()
    return getattr(context, "query_string", "") or ""


class PageSettings(PageInputs):
    """The inputs of one page, kept in the link, in the session and in settings files."""

    def __init__(self, page: str, fields: Sequence[Field]):
        super().__init__(page, list(fields))
        DECLARED[page] = self.fields
        self._saved_key = f"_saved-{page}"
        self._notices_key = f"_notices-{page}"
        self._upload_key = f"_upload-{page}"

    # --- reading ------------------------------------------------------------------------------

    def restore(self) -> None:
        """Fill the widgets before they are drawn: from a link, else from this session's copy."""
        state = st.session_state
        if not state.get(_STARTED):
            state[_STARTED] = True
            raw = {name: st.query_params.get_all(name) for name in st.query_params}
            if raw:
                self._apply(page_state.parse(self.fields, raw, source="link"))
            elif _raw_query_string():  # Streamlit drops a whole link that is far too long
                self._apply(page_state.link_too_long(len(_raw_query_string())))
        for key, value in state.get(self._saved_key, {}).items():
            if key not in state:
                state[key] = value
        for notice in state.pop(self._notices_key, []):
            st.warning(notice, icon=":material/link_off:")

    def _apply(self, parsed: page_state.Parsed, done: str = "") -> None:
        state = st.session_state
        for key, value in parsed.values.items():
            state[key] = value
        notices = list(parsed.notices)
        if done and parsed.values:
            notices.insert(0, done)
        state[self._notices_key] = state.get(self._notices_key, []) + notices

    def _load_upload(self) -> None:
        upload = st.session_state.get(self._upload_key)
        if upload is None:
            return
        data = upload.getvalue()
        parsed = page_state.read_settings_document(self.page, self.fields, data)
        self._apply(parsed, done="Settings loaded from the file.")

    # --- writing ------------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        return self.values_in(st.session_state)

    def publish(self, sidebar: bool = True) -> None:
        """Keep a copy of the inputs, put them in the address bar, draw the share controls."""
        values = self.values()
        st.session_state[self._saved_key] = values
        encoded = page_state.encode(self.fields, values)
        try:
            if _normalised(st.query_params) != _normalised(encoded.params):
                st.query_params.from_dict(encoded.params)
        except Exception as error:  # noqa: BLE001 - the page works without an up-to-date link
            log.warning("could not update the link: %s", error)
        if sidebar:
            with st.sidebar:
                self._controls(values, encoded)

    def _controls(self, values: dict[str, Any], encoded: page_state.Encoded) -> None:
        st.markdown("**Share and save**")
        link = page_state.share_link(_current_url(), encoded.params)
        with st.popover("Copy link", icon=":material/link:", width="stretch"):
            st.caption(
                "This link opens the page with the same inputs. With the same seed, the model "
                "writes the same text. Copy it with the icon at the right of the box."
            )
            st.code(link, language=None, wrap_lines=True)
            if encoded.left_out:
                st.caption(
                    f"Left out of the link because it is too long: {', '.join(encoded.left_out)}. "
                    "Download the settings file to keep everything."
                )
        document = page_state.settings_document(self.page, self.fields, values)
        st.download_button(
            "Download settings",
            data=document,
            file_name=self.settings_file_name,
            mime="application/json",
            on_click="ignore",
            icon=":material/download:",
            key=f"_download-{self.page}",
            width="stretch",
            help="A small JSON file with every input of this page; load it again below.",
        )
        st.file_uploader(
            "Load settings",
            type=["json"],
            key=self._upload_key,
            on_change=self._load_upload,
            max_upload_size=1,
            help="A settings file downloaded from this page.",
        )


def _normalised(params: Any) -> dict[str, list[str]]:
    if hasattr(params, "get_all"):
        return {name: params.get_all(name) for name in params}
    return {k: (v if isinstance(v, list) else [v]) for k, v in params.items()}


# --- downloads for tables and charts --------------------------------------------------------

PNG_HINT = "PNG: the camera icon on the chart's toolbar."
MIME = {"csv": "text/csv", "html": "text/html", "json": "application/json"}


def download(label: str, data: Any, file_name: str, key: str, help: str) -> None:
    """A quiet download button (no rerun on click); `data` may be a function, run on click.

    The file type (CSV, HTML, JSON) comes from the file name's extension.
    """
    st.download_button(
        label,
        data=data,
        file_name=file_name,
        mime=MIME[file_name.rsplit(".", 1)[-1]],
        on_click="ignore",
        icon=":material/download:",
        type="tertiary",
        key=key,
        help=help,
    )


def chart(figure: Any, key: str, title: str, **options: Any) -> None:
    """A Plotly chart that saves as PNG (toolbar camera) and downloads as a standalone HTML file."""
    stem = exports.file_stem(title)
    st.plotly_chart(
        figure,
        key=key,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2},
        },
        **options,
    )
    download(
        "Chart as HTML",
        data=lambda: exports.figure_html(figure),
        file_name=f"{stem}.html",
        key=f"{key}-html",
        help=f"An interactive copy of this chart that opens in any browser. {PNG_HINT}",
    )


def table(
    frame: Any, key: str, title: str, *, static: bool = False, csv: Any = None, **options: Any
) -> None:
    """A table (interactive, or `static` like st.table) with a CSV download button under it.

    `csv` is the table to download when it differs from the one shown: exact token texts and
    unrounded numbers, where the page shows spaces as dots and rounds for reading.
    """
    if static:
        st.table(frame, **options)
    else:
        st.dataframe(frame, key=key, **options)
    download(
        "Table as CSV",
        data=exports.table_csv(frame if csv is None else csv),
        file_name=f"{exports.file_stem(title)}.csv",
        key=f"{key}-csv",
        help="The table as a CSV file, for a spreadsheet or a notebook.",
    )
