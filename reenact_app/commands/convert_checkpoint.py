"""`reenact convert-checkpoint`: upstream FOMM .pth.tar (+ YAML) -> the project's safetensors format
(also: rewrite a project file with the warped-source blend switched on or off)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="convert an upstream FOMM checkpoint to the project's safetensors format",
        description="Reads the checkpoint with weights_only=True (no code runs), checks it strictly "
        "against the architecture, and writes safetensors with the config in its metadata.",
    )
    p.add_argument("input", help="upstream .pth.tar (or a project .safetensors)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path")
    p.add_argument("--config", help="upstream FOMM YAML (model_params) or a preset name, e.g. fomm-vox256")
    p.add_argument("--source-blend", choices=("on", "off"),
                   help="switch the warped-source blend in the written file: where the occlusion map sees the "
                   "avatar, show it warped instead of the decoder's rebuild (see docs/models.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models import convert_checkpoint

    blend = None if args.source_blend is None else args.source_blend == "on"
    out = convert_checkpoint(args.input, args.output, args.config, blend)
    log.info("wrote %s", out)
    print(out)
    return 0
