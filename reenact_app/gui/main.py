"""`reenact-app` entry point (placeholder until the GUI lands)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("reenact-app: the desktop app is not built yet; use `reenact --help`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
