"""Warped-source blend on trained weights: held-out L1 / AKD / AED of three outputs, paired per clip.

    python -m experiments.source_blend_eval --data DATA [--checkpoint FILE]
        [--max-frames 48] [--spread] [--out FILE]

Rows: "decoder" (the generator's prediction, FOMM and the paper), "blend" (visibility * warped avatar +
(1 - visibility) * prediction, visibility being the occlusion map relative to its value at rest:
models/source_blend.py) and "warp" (the avatar warped by the dense motion alone, no decoder: what the
blend is where the visibility is 1). One process and one reference
cache: the real frames are scored once. Writes experiments/results/source-blend-eval-<frames>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models import load_checkpoint
from training.evaluate import ReferenceCache, clip_metric, evaluate, format_paired, paired_difference
from training.warp_only import with_warp_only
from reenact_common.scripts import run_script, write_report

METRICS = ("l1", "akd", "aed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", help="default: the bundled weights")
    parser.add_argument("--max-frames", type=int, default=48)
    parser.add_argument("--spread", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    cache = ReferenceCache()
    reports: dict[str, dict] = {}
    for name in ("decoder", "blend", "warp"):
        model.set_warped_source_blend(name == "blend")
        variant = with_warp_only(model) if name == "warp" else model
        reports[name] = evaluate(variant, args.data, max_frames=args.max_frames, spread=args.spread,
                                 cache=cache, progress=False).to_dict()
    static = reports["decoder"]["overall"]["static_baseline"]
    print("| output | L1 | AKD | AED | per clip vs decoder: L1 / AKD / AED (lower on) | per clip vs static: L1 / AKD / AED (lower on) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name, report in reports.items():
        overall = report["overall"]["model"]
        diffs = {m: paired_difference(clip_metric(report, m), clip_metric(reports["decoder"], m)) for m in METRICS}
        vs_static = {m: paired_difference(clip_metric(report, m), clip_metric(report, m, "static_baseline"))
                     for m in METRICS}
        summary[name] = {"overall": {m: overall[m] for m in METRICS}, "vs_decoder": diffs, "vs_static": vs_static}
        print(f"| {name} | {overall['l1']:.4f} | {overall['akd']:.3f} | {overall['aed']:.4f} | {format_paired(diffs)} "
              f"| {format_paired(vs_static)} |")
    print(f"| static baseline | {static['l1']:.4f} | {static['akd']:.3f} | {static['aed']:.4f} | | |")
    frames = f"{'spread' if args.spread else 'first'}{args.max_frames}"
    out = args.out or Path(__file__).parent / "results" / f"source-blend-eval-{frames}.json"
    clips = {name: [{"clip": c["clip"], **{m: c["model"][m] for m in METRICS}} for c in r["clips"]]
             for name, r in reports.items()}
    write_report(out, {
        "checkpoint": args.checkpoint or "bundled", "data": args.data, "max_frames": args.max_frames,
        "spread": args.spread, "static_baseline": {m: static[m] for m in METRICS}, "summary": summary,
        "clips": clips})
    return 0


if __name__ == "__main__":
    run_script(main)
