"""Retrieval networks (paper 000 / 002 heads, GeM pooling) built from tables of named parts."""
from .net import RetrievalNet, architecture_meta, build_from_meta, build_net, load_checkpoint

__all__ = ["RetrievalNet", "architecture_meta", "build_from_meta", "build_net", "load_checkpoint"]
