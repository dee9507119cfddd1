"""LLM Lab: the router. Each page lives in app_pages/; this file only lists them.

The folder is not called `pages/`: Streamlit treats a `pages/` folder as the older automatic
navigation, and a visitor whose first request is a page URL (a shared link) would get that
navigation instead of this router."""

import streamlit as st

st.set_page_config(page_title="LLM Lab", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/tokenizers.py", title="Tokenizers", icon=":material/segment:"),
    st.Page("app_pages/architecture.py", title="Architecture", icon=":material/account_tree:"),
    st.Page("app_pages/next_token.py", title="Next-Token", icon=":material/bar_chart:"),
    st.Page("app_pages/decoding.py", title="Decoding", icon=":material/route:"),
    st.Page("app_pages/chat_vs_base.py", title="Chat vs Base", icon=":material/forum:"),
    st.Page("app_pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/model_training:"),
    st.Page("app_pages/class.py", title="Class", icon=":material/groups:"),
]
st.navigation(pages).run()
