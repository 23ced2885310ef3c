"""Inference engines behind one interface (see base.py); `create_engine` picks one (see select.py).

Interactive front ends (the GUI) use only the facade (facade.py): `EngineOpener().open(ModelSpec(...))`.
"""

from reenact_app.engines.base import Engine, Keypoints, SourceState
from reenact_app.engines.facade import EngineOpener, ModelSpec, needs_export, preload_engine_modules

__all__ = ["Engine", "EngineOpener", "EngineOptions", "Keypoints", "ModelSpec", "SourceState", "create_engine",
           "needs_export", "preload_engine_modules"]


def __getattr__(name: str):
    """`from reenact_app.engines import create_engine` without importing torch at package import."""
    if name in ("create_engine", "EngineOptions", "FallbackEngine"):
        from reenact_app.engines import select

        return getattr(select, name)
    raise AttributeError(f"module 'reenact_app.engines' has no attribute {name!r}")
