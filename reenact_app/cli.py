"""`reenact` command line: one sub-command per module in `reenact_app.commands`.

Each command module defines `register(subparsers)` and keeps heavy imports (torch, cv2, Qt) inside its
run function, so `reenact --help` and `reenact --version` stay instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from reenact_app import __version__
from reenact_common.errors import ReenactError

# Sub-command modules, in the order `--help` lists them.
COMMAND_MODULES = (
    "reenact_app.commands.convert_checkpoint",
    "reenact_app.commands.animate",
    "reenact_app.commands.export",
    "reenact_app.commands.bench",
    "reenact_app.commands.prepare_data",
    "reenact_app.commands.train",
    "reenact_app.commands.evaluate",
    "reenact_app.commands.evaluate_cross",
    "reenact_app.commands.live",
)

log = logging.getLogger("reenact")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reenact", description="Real-time face reenactment: CLI tools.")
    parser.add_argument("--version", action="version", version=f"reenact {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """argv None: run as the program (`reenact ...`), which owns its process, so the native libraries'
    start-up chatter is filtered off stderr unless --verbose (see reenact_app.native_stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and not args.verbose:
        from reenact_app import native_stderr

        native_stderr.install()  # before logging binds its handler to sys.stderr
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ReenactError as exc:
        print(f"reenact {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
