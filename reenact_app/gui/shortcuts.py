"""The keyboard shortcuts, in one table shared by the main window and the Help dialog (so they never drift)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    keys: str  # QKeySequence text
    action: str  # controller/window action name
    description: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("C", "calibrate", "Calibrate: take the current pose as the neutral reference"),
    Shortcut("1", "avatar", "Switch to avatar 1 (keys 1-9 pick avatars 1-9)"),
    Shortcut("V", "toggle_virtual_camera", "Start / stop the virtual camera"),
    Shortcut("R", "toggle_recording", "Start / stop recording to MP4"),
    Shortcut("F", "toggle_freeze_crop", "Freeze / unfreeze the face crop"),
    Shortcut("D", "redetect", "Re-detect the face (new crop)"),
    Shortcut("M", "toggle_mirror", "Mirror the driving video"),
    Shortcut("P", "toggle_paste_back", "Paste back into the whole portrait / show the crop alone"),
    Shortcut("K", "toggle_keypoints", "Show / hide tracked keypoints on the driving view"),
    Shortcut("A", "toggle_relative", "Relative / absolute motion"),
    Shortcut("]", "expression_up", "Stronger expression: mouth and eyes follow the driver more"),
    Shortcut("[", "expression_down", "Weaker expression (0: the head moves, mouth and eyes only as the model does)"),
    Shortcut("F11", "toggle_full_screen", "Full-screen preview (double-click the preview too)"),
    Shortcut("Esc", "leave_full_screen", "Leave full screen"),
    Shortcut("Ctrl+O", "add_avatar", "Add an avatar image"),
    Shortcut("Ctrl+M", "choose_model", "Load a model checkpoint"),
    Shortcut("F1", "help", "This help"),
    Shortcut("Ctrl+Q", "quit", "Quit"),
)
