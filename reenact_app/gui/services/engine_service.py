"""Opens and switches the inference engine through the engines' facade."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from reenact_app.engines import EngineOpener, ModelSpec
from reenact_app.gui.services.ui import UiPort
from reenact_app.gui.settings import AppSettings
from reenact_common.errors import EngineError
from reenact_common.paths import default_weights

log = logging.getLogger(__name__)

NO_WEIGHTS_TEXT = "No model weights found — the bundled weights (assets/weights/default.safetensors) are missing."
NO_WEIGHTS_FIX = "Choose a checkpoint file (File ▸ Load model checkpoint…, Ctrl+M): ours (.safetensors) or an upstream FOMM .pth.tar with its .yaml."
EXPORT_BUSY_TEXT = "Exporting the model for ONNX Runtime (first run only)"
RETIRE_WAIT_S = 5.0  # how long a switch waits for the pipeline to let go of the previous engine


def model_label(settings: AppSettings) -> str:
    return Path(settings.model_path).name if settings.model_path else "Bundled weights"


class EngineService:
    """Opens and switches the inference engine through the engines' facade.

    Threads:
    - command thread: `load` (checkpoint -> engine, the first-run ONNX export in a child process included)
      is the only writer of `engine`, of the retired engines and of the model that last worked; other threads
      only read `engine` (the pipeline runs it, the status bar describes it).
    - UI thread: `cancel` (the window closed: stops a running export) and `show_notice`, which keeps the
      last fallback notice; the pipeline thread's notices are posted there.
    - `close` runs at shutdown, after the command thread has stopped.
    """

    def __init__(self, ui: UiPort, settings: Callable[[], AppSettings], pipeline: Callable[[], object],
                 busy_text: Callable[[], str]):
        self._ui = ui
        self._settings = settings
        self._pipeline = pipeline  # the LivePipeline or None: it gets each new engine
        self._busy_text = busy_text  # what the status bar said before an export took it over
        self.engine = None
        self._retired: list = []  # still in use by the pipeline when replaced: closed at shutdown
        self._working_model: tuple[str, str] | None = None  # (model_path, model_config) of `engine`
        self._last_notice = ""
        self._opener = EngineOpener(on_export=self._export_busy)

    # -- command thread -----------------------------------------------------------------------------
    def load(self) -> None:
        """Builds the engine the settings ask for and hands it to the pipeline; the previous one keeps
        running when the new one fails (the banner says why)."""
        s = self._settings()
        model_path = s.model_path or None
        self._ui.update_state(model_label=model_label(s))
        missing = (model_path is None and not default_weights().is_file()) or (model_path is not None and not Path(model_path).is_file())
        if missing:
            self._ui.update_state(weights_missing=True)
            text = NO_WEIGHTS_TEXT if model_path is None else f"Model checkpoint not found: {model_path}"
            self._ui.message("error", text, NO_WEIGHTS_FIX, "Choose checkpoint…", "choose_model")
            return
        try:
            engine = self._open(ModelSpec(model_path, s.model_config or None, warped_source_blend=s.avatar_detail), s.engine)
        except Exception:
            if self.engine is not None and self._working_model is not None:
                working_path, working_config = self._working_model
                self._ui.update_settings(model_path=working_path, model_config=working_config)
            raise
        if engine is None:
            return  # closing
        self._working_model = (s.model_path, s.model_config)
        if hasattr(engine, "listeners"):
            engine.listeners.append(self.notice)
        old, self.engine = self.engine, engine
        pipeline = self._pipeline()
        if pipeline is not None:
            pipeline.set_engine(engine)
        if old is not None:
            self._retire(old)
        selection = getattr(engine, "selection", None)
        self._ui.update_state(engine_label=engine.describe(), weights_missing=False,
                              engine_detail=selection.summary() if hasattr(selection, "summary") else "")
        log.info("engine ready: %s", engine.describe())

    def _open(self, spec: ModelSpec, engine_name: str):
        """Through the facade; an engine not available here falls back to Auto, and says so."""
        try:
            return self._opener.open(spec, engine_name)
        except EngineError as exc:
            if engine_name == "auto":
                raise
            self._ui.message("warning", f"{engine_name} engine unavailable here: {exc}",
                             "Using the best available engine (Auto) instead.")
            return self._opener.open(spec, "auto")

    def _export_busy(self, started: bool) -> None:
        """The first-run ONNX export (a child process, see engines.export_child) gets its own busy label."""
        self._ui.busy(EXPORT_BUSY_TEXT if started else self._busy_text())

    def _retire(self, old) -> None:
        """Closes the previous engine once the pipeline stopped using it (switching engines a hundred
        times must not keep a hundred models in memory)."""
        pipeline = self._pipeline()
        deadline = time.monotonic() + RETIRE_WAIT_S
        while pipeline is not None and pipeline.running and pipeline.engine is old and time.monotonic() < deadline:
            time.sleep(0.02)
        if pipeline is not None and pipeline.engine is old:
            self._retired.append(old)
            return
        _close(old)

    # -- any thread -> UI thread --------------------------------------------------------------------
    def notice(self, text: str) -> None:
        """A FallbackEngine switched engines (its listener runs on the pipeline thread): tell the user once."""
        self._ui.call(self.show_notice, text)

    def show_notice(self, text: str) -> None:
        if text and text != self._last_notice:
            self._last_notice = text
            self._ui.message("warning", f"Engine fallback: {text}")

    # -- UI thread ------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stops a running export (the window closed)."""
        self._opener.cancel()

    def close(self) -> None:
        """At shutdown, with the command thread stopped: every engine closed."""
        for engine in [self.engine, *self._retired]:
            if engine is not None:
                _close(engine)
        self.engine, self._retired = None, []


def _close(engine) -> None:
    try:
        engine.close()
    except Exception:  # noqa: BLE001 - a failing close must not stop a switch or the shutdown
        log.debug("closing an engine failed", exc_info=True)
