"""Read a training run's `metrics.csv` (written by the trainer, long format).

Why: the trainer restarts `elapsed_s` at every invocation (a resume starts a new clock), so studies
that report a run's wall time need it made cumulative; this is the one reader that does.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path


def metric_rows(path: str | Path) -> Iterator[dict]:
    """The rows of a run's metrics.csv, each with `wall_s`: elapsed_s made cumulative over invocations."""
    offset = last = 0.0
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            elapsed = float(row["elapsed_s"])
            if elapsed < last:
                offset += last
            last = elapsed
            yield {**row, "wall_s": offset + elapsed}


def train_seconds(run_dir: str | Path) -> float:
    """Training wall time of a run over all its invocations (0 when it has no metrics yet)."""
    total = 0.0
    try:
        for row in metric_rows(Path(run_dir) / "metrics.csv"):
            total = row["wall_s"]
    except OSError:
        pass
    return total
