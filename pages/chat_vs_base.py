"""Chat vs Base page."""

import streamlit as st

from llmlab import ui

ui.page_intro("Chat vs Base", "The same prompt through a base (completion) model and an instruction-tuned chat model, and the chat template that makes the difference.")
st.info("This page is being built. The Home page shows the models and tokenizers available now.")
