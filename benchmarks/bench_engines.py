"""Engine benchmark for docs/performance.md: every CPU engine on fomm-vox256 and the real-time presets.

    python -m benchmarks.bench_engines [--presets fomm-vox256 paper-rt] [--frames 12] [--out FILE]

Writes benchmarks/results/engines-<host>-<date>.json and prints the table (see
reenact_app/benchmarking.py for how and why the timing is interleaved).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from pathlib import Path

from reenact_app.benchmarking import BenchConfig, format_table, run_benchmark, write_json

SHARED_CLIP = Path(__file__).resolve().parent.parent.parent / "shared/data/clips/wyhsirius+LIA/data/vox/driving1.mp4"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fomm-vox256", "paper-vox256", "fomm-rt", "paper-rt"])
    parser.add_argument("--engines", nargs="+", default=list(BenchConfig.engines))
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for every engine (0: all)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/engines-<host>-<date>.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = BenchConfig(
        presets=tuple(args.presets), engines=tuple(args.engines), frames=args.frames,
        video=os.path.relpath(SHARED_CLIP) if SHARED_CLIP.is_file() else None,  # the report names it relatively memory=not args.no_memory,
        threads=args.threads,
    )
    report = run_benchmark(config)
    table = format_table(report)
    print(table)
    out = args.out or Path(__file__).parent / "results" / f"engines-{socket.gethostname()}-{time.strftime('%Y%m%d-%H%M')}.json"
    print(f"wrote {write_json(report, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
