"""What the pages show, as plain data: page models built without Streamlit.

A page reads its widgets, asks a module here for the data to draw, and draws it; the module is
tested like any other library code.
"""
