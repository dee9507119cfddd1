"""Tokenizers page."""

import streamlit as st

from llmlab import ui

ui.page_intro("Tokenizers", "How text becomes numbers: word, character and BPE tokenizers built from scratch, and real tokenizers side by side.")
st.info("This page is being built. The Home page shows the models and tokenizers available now.")
