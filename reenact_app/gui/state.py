"""AppState: what the status bar, the buttons and the tests read. Plain data, written on the UI thread only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AppState:
    """What the status bar, the buttons and the tests look at."""

    engine_label: str = ""
    engine_detail: str = ""  # why this engine: the candidates skipped and the reasons
    model_label: str = "Bundled weights"
    fps: float = 0.0
    latency_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    face_found: bool | None = None
    pipeline_state: str = ""  # live, holding, fading, neutral, no-avatar, source-lost
    vcam: str = "off"
    vcam_on: bool = False
    vcam_device: str = ""
    recording: bool = False
    recording_path: str = ""
    last_recording: str = ""
    source_kind: str = "video"  # camera or video
    source_label: str = ""  # source_name plus its trouble, if any ("camera 0: reconnecting")
    source_name: str = ""
    avatar_index: int = -1
    avatar_path: str = ""
    frames_shown: int = 0
    frames_out: int = 0
    weights_missing: bool = False
    running: bool = False
    busy: str = ""
    last_message: str = ""

    @property
    def placeholder(self) -> str:
        """What the empty preview says: the most useful thing the user can know right now."""
        if self.weights_missing:
            return "No model weights found.\nChoose a checkpoint: File ▸ Load model checkpoint… (Ctrl+M)"
        if self.busy:
            return f"{self.busy}…"
        if self.running:
            return "Waiting for the first frame…"
        return "Starting…"

    @property
    def recording_name(self) -> str:
        return Path(self.recording_path).name
