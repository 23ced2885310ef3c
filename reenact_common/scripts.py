"""What every benchmark and study script does at its edges: write its JSON report and turn bad input
into one line instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NoReturn

from reenact_common.errors import ReenactError


def write_report(path: str | Path, report: Any, indent: int = 1) -> Path:
    """Write `report` as JSON (folders made as needed) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=indent) + "\n")
    print(f"wrote {out}")
    return out


def run_script(main: Callable[[], int]) -> NoReturn:
    """`raise SystemExit(main())`, with the project's errors (bad input) as their one-line message."""
    try:
        raise SystemExit(main())
    except ReenactError as exc:  # bad input: one line that says what to do
        raise SystemExit(str(exc)) from None
