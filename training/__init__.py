"""rsir training: models, losses, `python -m training.fit` and `python -m training.evaluate`.

The papers in ../shared/papers are the specification; docs/training.md says how to run everything.
"""
