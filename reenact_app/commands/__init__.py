"""`reenact` sub-commands, one module each (see reenact_app/cli.py)."""

from __future__ import annotations

import argparse


def add_model_arguments(p: argparse.ArgumentParser, engine: bool = False) -> None:
    """The model-selection options every inference command shares (same names, defaults and help)."""
    p.add_argument("--checkpoint", help="model checkpoint (.safetensors, or upstream .pth.tar with --config); "
                   "default: the bundled weights")
    p.add_argument("--config", help="upstream FOMM YAML or preset name (for .pth.tar checkpoints)")
    if engine:
        p.add_argument("--engine", default="auto", help="auto|torch|onnxruntime|tensorrt (or a concrete "
                       "candidate such as onnxruntime-int8); auto picks the fastest available")
