"""Next-Token page."""

import streamlit as st

from llmlab import ui

ui.page_intro("Next-Token", "A model scores every token in its vocabulary; softmax turns the scores into probabilities, and temperature, top-k and top-p reshape them.")
st.info("This page is being built. The Home page shows the models and tokenizers available now.")
