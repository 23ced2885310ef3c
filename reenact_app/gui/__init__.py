"""The `reenact-app` desktop application (PySide6).

Layout of the package (view code separate from state, so tests can drive the app without widgets). Models
are reached only through the engines' facade (`reenact_app.engines.EngineOpener`): nothing here imports
torch, onnxruntime, `models` or `export` (tests/test_layering.py checks it).
- app.py: QApplication setup, display detection, removal of OpenCV's Qt plugin override;
- controller.py: AppController, the signals and every user action, composing the services;
- services/: one job and one owner each: settings, engine, avatars, sources, pipeline, outputs, status
  (each module says which thread owns what);
- worker.py: the command thread and the latest-frame bridge to the UI thread;
- live.py: glue to the LivePipeline (settings applied in one place, detachable sinks, smoothing mapping);

- main_window.py + widgets/: the view; help_dialog.py, shortcuts.py;
- settings.py: AppSettings saved as JSON in the user config dir; avatars.py: avatar files;
- stall.py: UI-thread stall meter;
- main.py / run.py: the console entry point, the event loop and the headless screenshot mode.

Threads (UI, command, pipeline, capture, virtual-camera sender, recorder, stderr filter) and child processes
(ONNX export, ffmpeg): who owns each and how they talk is in docs/architecture.md, "Threads and processes".
"""
