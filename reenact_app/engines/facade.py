"""The engines' one door for interactive front ends: a checkpoint in, a running engine out.

Why: the GUI must stay free of torch, `models`, `export` and onnxruntime (it can't load or mutate a model,
and it can't know the export cache or the engine order). Everything it needs from a model goes through
here: loading a checkpoint (with the "Avatar detail" switch), the first-run ONNX export in a cancellable
child process (see export_child), and the engine build itself. The export cache key belongs to
`onnx_engine.export_folder` and the candidate order to `select`; this module only asks them.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from models import ReenactModel
    from reenact_app.engines.base import Engine
    from reenact_app.engines.select import EngineOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: a checkpoint file (None: the bundled weights), its architecture (a preset
    name or an upstream YAML, for .pth.tar files), and whether its warped-source blend is on."""

    checkpoint: str | None = None
    config: str | None = None
    warped_source_blend: bool = True


@contextmanager
def _single_threaded_torch():
    """Loading a checkpoint is hundreds of tiny tensor ops (copies, NaN checks); with an OpenMP team per
    op, the spinning workers starve a UI thread on a small machine (measured on 2 busy cores: 0.7-1.1 s
    and 200-450 ms UI stalls with 2 threads, 70 ms and none with 1)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_model(spec: ModelSpec) -> "ReenactModel":
    """The checkpoint as a model, with the blend switch applied; raises CheckpointError/ConfigError."""
    from models import load_checkpoint

    with _single_threaded_torch():
        model = load_checkpoint(spec.checkpoint, spec.config)
        if not spec.warped_source_blend:
            model.set_warped_source_blend(False)
    return model


def _export_pending(model: "ReenactModel", engine: str, options: "EngineOptions") -> bool:
    """True when `create_engine(model, engine, options=options)` would export to ONNX now: the first
    candidate available here is an ONNX Runtime one and the cache has no graphs for this model."""
    from reenact_app.engines import select

    first = select.first_available(engine)
    if first is None or not first.startswith("onnxruntime"):
        return False
    from reenact_app.engines.onnx_engine import has_export

    return not has_export(model, options.cache_dir)


def needs_export(spec: ModelSpec, engine: str = "auto", options: "EngineOptions | None" = None) -> bool:
    """Whether opening `spec` with `engine` would first export it to ONNX (minutes on a slow CPU)."""
    from reenact_app.engines.select import EngineOptions

    return _export_pending(load_model(spec), engine, options or EngineOptions())


class EngineOpener:
    """Opens engines for an interactive app, one at a time, off its UI thread; `cancel()` (any thread,
    e.g. the window closing) ends a running export and makes later opens return None.

    `on_export(True/False)` is called around a first-run export so the app can say why it waits."""

    def __init__(self, on_export: Callable[[bool], None] | None = None):
        self._on_export = on_export or (lambda started: None)
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._child = None  # export_child.ChildExport while one runs
        self.last_export = None  # the latest ChildExport (its `process` says how the child ended)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            child = self._child
        if child is not None:
            child.cancel()

    def open(self, spec: ModelSpec, engine: str = "auto", options: "EngineOptions | None" = None) -> "Engine | None":
        """A ready engine (see select.create_engine for names and fallback), or None when cancelled.
        Raises CheckpointError/ConfigError for a bad checkpoint, EngineError when no engine can start."""
        from reenact_app.engines.select import EngineOptions, create_engine

        options = options or EngineOptions()
        model = load_model(spec)
        if not self.cancelled and _export_pending(model, engine, options):
            self._export_in_child(spec, options)
        if self.cancelled:
            return None  # closing: don't start an engine build nobody will use
        return create_engine(model, engine, options=options)

    def _export_in_child(self, spec: ModelSpec, options: "EngineOptions") -> None:
        from reenact_app.engines.export_child import ChildExport

        child = ChildExport(spec.checkpoint, spec.config, spec.warped_source_blend, options.cache_dir)
        with self._lock:
            self._child = self.last_export = child
        if self.cancelled:  # cancel() may have run just before the child was set
            child.cancel()
        self._on_export(True)
        try:
            ok = child.run()
        finally:
            with self._lock:
                self._child = None
            self._on_export(False)
        if not ok and not self.cancelled:
            log.warning("ONNX export in a child process failed; the engine build will retry in this process")


def preload_engine_modules() -> None:
    """Imports torch, ONNX Runtime and the exporter now, and warms torch's meta kernels.

    Importing a large C extension holds the GIL for 100+ ms at a time, and load_checkpoint's first use
    of the meta device imports torch's meta kernels (1-3 s holding the GIL, measured); an app calls this
    before its window exists rather than let the first model load freeze the window."""
    import torch

    for optional in ("safetensors.torch", "onnxruntime", "export.onnx_export", "reenact_app.engines.onnx_engine"):
        try:
            __import__(optional)
        except ImportError:
            pass
    from models import build_model
    from reenact_app.engines import select  # noqa: F401

    with torch.device("meta"):
        build_model("paper-rt")


__all__ = ["EngineOpener", "ModelSpec", "load_model", "needs_export", "preload_engine_modules"]
