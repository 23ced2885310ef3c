"""Cross-identity expression transfer of the bundled weights, expression retargeting off and at the app's
default, on the same driver clips and avatars (loaded once), with the mesh-warp reference row.

    python -m benchmarks.cross_identity --data prepared/shared256 [--clips 8] [--frames 48] [--threads 2]

Writes one report per arm, `results/cross-identity-shipped.json` (the app's defaults: retargeting on) and
`results/cross-identity-shipped-expression0.json` (retargeting off: the model's own motion), and a frame
strip per arm in docs/. The same numbers come from `reenact evaluate-cross ... --expression S` per arm.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reenact_app.cross_eval import default_avatar_paths, evaluate_cross, load_cross_data
from reenact_app.engines.select import EngineOptions, create_engine
from reenact_app.expression import ExpressionSettings

REPO = Path(__file__).resolve().parent.parent
ARMS = ((1.0, "cross-identity-shipped", "cross-identity-strip"),
        (0.0, "cross-identity-shipped-expression0", "cross-identity-strip-expression0"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="prepared data folder with test/")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args()

    started = time.perf_counter()
    data = load_cross_data(args.data, default_avatar_paths(), clips=args.clips, frames=args.frames)
    engine = create_engine(None, args.engine, options=EngineOptions(threads=args.threads))
    try:
        for strength, name, strip in ARMS:
            report = evaluate_cross(engine, data, expression=ExpressionSettings(strength=strength), reference=True,
                                    strip=args.docs / f"{strip}.jpg", label=f"bundled weights, expression {strength:g}")
            result = report.to_dict()
            result["command"] = (f"python -m benchmarks.cross_identity --data {args.data} --clips {args.clips} "
                                 f"--frames {args.frames}")
            (args.results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
            print(report.table(), flush=True)
    finally:
        engine.close()
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
