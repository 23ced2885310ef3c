"""Inference engines behind one interface (see base.py); `create_engine` picks one (see select.py)."""

from reenact_app.engines.base import Engine, Keypoints, SourceState

__all__ = ["Engine", "EngineOptions", "Keypoints", "SourceState", "create_engine"]


def __getattr__(name: str):
    """`from reenact_app.engines import create_engine` without importing torch at package import."""
    if name in ("create_engine", "EngineOptions", "FallbackEngine"):
        from reenact_app.engines import select

        return getattr(select, name)
    raise AttributeError(f"module 'reenact_app.engines' has no attribute {name!r}")
