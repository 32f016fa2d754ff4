"""Compression of trained runs: structured pruning (attention heads by importance, top layers),
magnitude pruning, int8 quantization and ONNX export.

The result stays a run folder: its backbone is saved by the ``compressed`` adapter method
(``adapter.py``), which records the new structure in the run's config and rebuilds it on load, so
``mmsft eval`` / ``predict`` work on it unchanged.  This package's ``__init__`` imports nothing:
the adapter module is imported by the ``ADAPTERS`` registry, and must stay cheap.
"""
