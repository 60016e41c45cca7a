"""Evaluation: embedding extraction (torch or ONNX), retrieval metrics, PR-curve figure."""
