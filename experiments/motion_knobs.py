"""Inference-time motion knobs against the identity error: can the dense motion be made to distort less?

    python -m experiments.motion_knobs --data DATA [--split train] [--clips 20]
        [--variants shipped jacobian:0 jacobian:0.5 smooth:1 smooth:2 temperature:0.5 temperature:0.75
         temperature:1.5]

Why: with the rest-normalised blend the output equals the avatar warped by the dense motion, and the AED
gap to the static baseline grows with motion (experiments/aed_by_motion.py), so the warp's own distortion
is what dlib sees. Two weightless ways to make it distort less, scored with the reconstruction protocol
(first 48 frames per clip) and paired per clip against the shipped model:
  jacobian:A  every keypoint's jacobian pulled toward the identity, J' = I + A (J - I): A = 0 moves each
              keypoint's neighbourhood by translation only, A = 1 is the shipped model
  smooth:S    the dense-motion displacement smoothed by a Gaussian of S pixels of its 64-px grid
  temperature:T  the motion mask's softmax at temperature T (T < 1: sharper, each region follows fewer
              keypoints' local affine motions, so the face moves more piecewise-rigidly)
Choose on training clips (the default split), confirm on held-out ones. Writes
experiments/results/motion-knobs-<split>.json (overall and per-clip metrics, paired differences).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models import load_checkpoint
from models.blocks import make_coordinate_grid
from training.evaluate import ReferenceCache, clip_metric, evaluate, format_paired, paired_difference
from training.losses import gaussian_window
from reenact_common.scripts import run_script, write_report

METRICS = ("l1", "akd", "aed")


class JacobianTowardIdentity(nn.Module):
    """The keypoint detector with its jacobians scaled toward the identity: J' = I + amount (J - I)."""

    def __init__(self, detector: nn.Module, amount: float):
        super().__init__()
        self.detector = detector
        self.amount = amount

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.detector(image))
        eye = torch.eye(2, dtype=out["jacobian"].dtype, device=out["jacobian"].device)
        out["jacobian"] = eye + self.amount * (out["jacobian"] - eye)
        return out


def smooth_deformation(deformation: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smooth a sampling grid's displacement (B, h, w, 2), edges replicated."""
    radius = max(1, round(3 * sigma))
    b, h, w, _ = deformation.shape
    grid = make_coordinate_grid(h, w, deformation)
    displacement = (deformation - grid).permute(0, 3, 1, 2)
    kernel = gaussian_window(2 * radius + 1, sigma, displacement)
    displacement = F.conv2d(F.pad(displacement, (radius,) * 4, mode="replicate"), kernel, groups=2)
    return grid + displacement.permute(0, 2, 3, 1)


class Scaled(nn.Module):
    """A module's output times a constant (the mask logits divided by a temperature)."""

    def __init__(self, module: nn.Module, factor: float):
        super().__init__()
        self.module = module
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.factor


def build_variant(name: str, checkpoint: str | None):
    """A fresh model with one knob applied (`shipped`, `jacobian:A`, `smooth:S` or `temperature:T`)."""
    model = load_checkpoint(checkpoint)
    kind, _, value = name.partition(":")
    if kind == "jacobian":
        return dataclasses.replace(model, kp_detector=JacobianTowardIdentity(model.kp_detector, float(value)))
    if kind == "smooth":
        dense_motion = model.generator.dense_motion_network
        predict, sigma = dense_motion.predict, float(value)

        def smoothed(*args, **kwargs):
            out = predict(*args, **kwargs)
            return {**out, "deformation": smooth_deformation(out["deformation"], sigma)}

        dense_motion.predict = smoothed
        return model
    if kind == "temperature":
        dense_motion = model.generator.dense_motion_network
        dense_motion.mask = Scaled(dense_motion.mask, 1.0 / float(value))
        return model
    if kind != "shipped":
        raise SystemExit(f"unknown variant {name!r}: use shipped, jacobian:A, smooth:S or temperature:T")
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", help="default: the bundled weights")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--max-frames", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["shipped", "jacobian:0", "jacobian:0.5", "smooth:1", "smooth:2",
                                 "temperature:0.5", "temperature:0.75", "temperature:1.5"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    variants = ["shipped", *[v for v in args.variants if v != "shipped"]]
    cache = ReferenceCache()
    reports = {name: evaluate(build_variant(name, args.checkpoint), args.data, split=args.split,
                              max_frames=args.max_frames, max_clips=args.clips, cache=cache,
                              progress=False).to_dict()
               for name in variants}
    shipped = reports["shipped"]
    print("| variant | L1 | AKD | AED | per clip vs shipped: L1 / AKD / AED (lower on) |")
    print("|---|---|---|---|---|")
    summary = {}
    for name, report in reports.items():
        overall = report["overall"]["model"]
        diffs = {m: paired_difference(clip_metric(report, m), clip_metric(shipped, m)) for m in METRICS}
        summary[name] = {"overall": {m: overall[m] for m in METRICS}, "vs_shipped": diffs,
                         "clips": {c["clip"]: {m: c["model"][m] for m in METRICS} for c in report["clips"]}}
        print(f"| {name} | {overall['l1']:.4f} | {overall['akd']:.3f} | {overall['aed']:.4f} | {format_paired(diffs)} |")
    static = shipped["overall"]["static_baseline"]
    print(f"| static baseline | {static['l1']:.4f} | {static['akd']:.3f} | {static['aed']:.4f} | |")
    out = args.out or Path(__file__).parent / "results" / f"motion-knobs-{args.split}.json"
    write_report(out, {
        "checkpoint": args.checkpoint or "bundled", "data": args.data, "split": args.split, "clips": args.clips,
        "max_frames": args.max_frames, "static_baseline": {m: static[m] for m in METRICS}, "variants": summary,
    })
    return 0


if __name__ == "__main__":
    run_script(main)
