"""The app's services: one job and one owner each; AppController composes them.

- ui.py: UiThread (runs callables on the UI thread) and UiPort (what a service may change in the UI);
- settings_service.py: AppSettings and their file;
- engine_service.py: opening and switching the engine through the engines' facade;
- avatar_service.py: the avatar list, thumbnails, face detection, the avatar in use;
- source_service.py: the camera list, opening cameras and video files, the --driving override;
- pipeline_service.py: the LivePipeline and its frames on their way to the UI;
- output_service.py: virtual camera and recording;
- status_service.py: frames and pipeline status into AppState, banners for what went wrong.

Each module's docstring says which thread owns what (docs/architecture.md, "Threads and processes").
"""
