"""Decoding page."""

import streamlit as st

from llmlab import ui

ui.page_intro("Decoding", "How a model writes one token at a time: greedy, sampling, top-k, top-p and beam search, step by step.")
st.info("This page is being built. The Home page shows the models and tokenizers available now.")
