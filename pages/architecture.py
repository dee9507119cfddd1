"""Architecture page."""

import streamlit as st

from llmlab import ui

ui.page_intro("Architecture", "A language model is a stack of small, countable parts: GPT-2 inspected exactly, any model broken down, a real forward pass traced.")
st.info("This page is being built. The Home page shows the models and tokenizers available now.")
