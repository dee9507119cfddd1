"""The bridge between the library and Streamlit: with `llmlab.ui`, the only code under llmlab
that imports Streamlit.

Everything else in llmlab is plain Python, usable in a notebook and tested without a browser.
`sharing` keeps a page's inputs in its link, its session and its settings files, and offers
tables and charts as downloads.
"""
