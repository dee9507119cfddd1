"""Generation: everything that turns a model's scores into text, and the engine that serves it.

Every session's requests for one loaded model go to that model's engine (`engine.py`), which
steps them together as one batch. Around it sit the pieces a request is made of: the logits
filters (`filters.py`, `repetition.py`), the step-by-step decoders (`decoding.py`, `beam.py`),
the next-token views (`next_token.py`, `filter_steps.py`) and prepared chat runs
(`chat_runs.py`).
"""
