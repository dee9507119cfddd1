"""LLM Lab: the router. Each page lives in app_pages/; this file only routes to them.

The folder is not called `pages/`: Streamlit treats a `pages/` folder as the older automatic
navigation, and a visitor whose first request is a page URL (a shared link) would get that
navigation instead of this router. The list of pages is `llmlab.views.pages.PAGES`, which Home's
table of pages reads too."""

import streamlit as st

from llmlab.views.pages import PAGES

st.set_page_config(page_title="LLM Lab", page_icon=":material/science:", layout="wide")

pages = [
    st.Page(page.path, title=page.title, icon=page.icon, default=page.default) for page in PAGES
]
st.navigation(pages).run()
