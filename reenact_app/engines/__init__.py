"""Inference engines behind one interface (see base.py)."""

from reenact_app.engines.base import Engine, Keypoints, SourceState

__all__ = ["Engine", "Keypoints", "SourceState"]
