"""Source-detail transfer on trained weights: held-out L1 / AKD / AED for several sigmas, paired per clip.

    python benchmarks/source_detail_sweep.py --data /work/prepared/shared256 [--checkpoint FILE]
        [--sigmas 0 2 3 4 6 64] [--max-frames 48] [--spread] [--out FILE]

Sigma 0 is the decoder alone; a large sigma (64) is close to the plain occlusion blend
`occ * deformed + (1 - occ) * prediction`. One process and one reference cache: the real frames are
scored once, each sigma costs only its own inference and metrics. Writes
benchmarks/results/source-detail-sweep.json (overall metrics and per-clip metrics per sigma).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import load_checkpoint  # noqa: E402
from training.evaluate import ReferenceCache, evaluate  # noqa: E402

METRICS = ("l1", "akd", "aed")


def paired(report: dict, reference: dict, metric: str) -> dict:
    """Per-clip difference report - reference: mean, standard error, clips lower."""
    ref = {c["clip"]: c["model"][metric] for c in reference["clips"]}
    diff = np.array([c["model"][metric] - ref[c["clip"]] for c in report["clips"]])
    return {"mean": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff))),
            "lower": int((diff < 0).sum()), "clips": len(diff)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", help="default: the bundled weights")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 2.0, 3.0, 4.0, 6.0, 64.0])
    parser.add_argument("--max-frames", type=int, default=48)
    parser.add_argument("--spread", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "source-detail-sweep.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    cache = ReferenceCache()
    reports: dict[str, dict] = {}
    for sigma in args.sigmas:
        model.set_source_detail(sigma)
        reports[f"{sigma:g}"] = evaluate(model, args.data, max_frames=args.max_frames, spread=args.spread,
                                         cache=cache, progress=False).to_dict()
    off = reports[f"{args.sigmas[0]:g}"]
    print(f"| sigma | L1 | AKD | AED | per clip vs sigma {args.sigmas[0]:g}: L1 / AKD / AED (lower on) |")
    print("|---|---|---|---|---|")
    summary = {}
    for name, report in reports.items():
        overall = report["overall"]["model"]
        diffs = {m: paired(report, off, m) for m in METRICS}
        summary[name] = {"overall": {m: overall[m] for m in METRICS}, "vs_first": diffs}
        cells = " / ".join(f"{d['mean']:+.4f} ± {d['se']:.4f} ({d['lower']})" for d in diffs.values())
        print(f"| {name} | {overall['l1']:.4f} | {overall['akd']:.3f} | {overall['aed']:.4f} | {cells} |")
    static = off["overall"]["static_baseline"]
    print(f"| static baseline | {static['l1']:.4f} | {static['akd']:.3f} | {static['aed']:.4f} | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    clips = {name: [{"clip": c["clip"], **{m: c["model"][m] for m in METRICS}} for c in r["clips"]]
             for name, r in reports.items()}
    args.out.write_text(json.dumps({
        "checkpoint": args.checkpoint or "bundled", "data": args.data, "max_frames": args.max_frames,
        "spread": args.spread, "static_baseline": {m: static[m] for m in METRICS}, "summary": summary,
        "clips": clips}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
