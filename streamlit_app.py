"""LLM Lab: the router. Each page lives in pages/; this file only lists them."""

import streamlit as st

st.set_page_config(page_title="LLM Lab", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/tokenizers.py", title="Tokenizers", icon=":material/segment:"),
    st.Page("pages/architecture.py", title="Architecture", icon=":material/account_tree:"),
    st.Page("pages/next_token.py", title="Next-Token", icon=":material/bar_chart:"),
    st.Page("pages/decoding.py", title="Decoding", icon=":material/route:"),
    st.Page("pages/chat_vs_base.py", title="Chat vs Base", icon=":material/forum:"),
]
st.navigation(pages).run()
