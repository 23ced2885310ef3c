"""Paired comparison of two `reenact evaluate-cross` reports (e.g. a training arm against the shipped weights).

Avatars and clips differ far more from each other than two models do, so arms are compared per
(clip, avatar) pair: for each feature, over the pairs both reports count, the mean difference of r and of
gain with its standard error, and on how many pairs the arm's r is higher.

    python -m training.cross_pairs shipped.json arm.json [--json paired.json]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from reenact_common.errors import ConfigError


@dataclass(frozen=True)
class PairedFeature:
    pairs: int
    mean_r_base: float
    mean_r_arm: float
    r_difference: float  # mean over pairs of arm - base
    r_difference_se: float
    r_higher: int  # pairs where the arm's r is higher
    gain_difference: float
    gain_difference_se: float


def _pairs(report: dict, path: str) -> dict[tuple[str, str], dict]:
    try:
        return {(p["clip"], p["avatar"]): p for p in report["pairs"]["model"]}
    except (KeyError, TypeError):
        raise ConfigError(f"{path} is not a `reenact evaluate-cross --json` report") from None


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def compare(base: dict, arm: dict, base_name: str = "base", arm_name: str = "arm") -> dict[str, PairedFeature]:
    """Per feature, the paired differences arm - base over the (clip, avatar) pairs both count."""
    base_pairs, arm_pairs = _pairs(base, base_name), _pairs(arm, arm_name)
    shared = sorted(set(base_pairs) & set(arm_pairs))
    if not shared:
        raise ConfigError(f"{base_name} and {arm_name} share no (clip, avatar) pair: run both with the same "
                          "--data, --clips, --frames and avatars")
    features = sorted({f for key in shared for f in base_pairs[key]["features"]})
    out = {}
    for feature in features:
        rows = [(base_pairs[k]["features"][feature], arm_pairs[k]["features"][feature]) for k in shared
                if base_pairs[k]["features"][feature]["counted"] and arm_pairs[k]["features"][feature]["counted"]]
        if not rows:
            continue
        r_diff, r_se = _mean_se([a["r"] - b["r"] for b, a in rows])
        g_diff, g_se = _mean_se([a["gain"] - b["gain"] for b, a in rows])
        out[feature] = PairedFeature(len(rows), sum(b["r"] for b, _ in rows) / len(rows),
                                     sum(a["r"] for _, a in rows) / len(rows), r_diff, r_se,
                                     sum(a["r"] > b["r"] for b, a in rows), g_diff, g_se)
    return out


def table(result: dict[str, PairedFeature]) -> str:
    lines = ["| feature | pairs | mean r base -> arm | r difference | arm r higher | gain difference |",
             "|---|---|---|---|---|---|"]
    for name, f in result.items():
        lines.append(f"| {name} | {f.pairs} | {f.mean_r_base:.2f} -> {f.mean_r_arm:.2f} | "
                     f"{f.r_difference:+.3f} ± {f.r_difference_se:.3f} | {f.r_higher}/{f.pairs} | "
                     f"{f.gain_difference:+.3f} ± {f.gain_difference_se:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paired comparison of two evaluate-cross reports")
    parser.add_argument("base", type=Path, help="report of the baseline (e.g. the shipped weights)")
    parser.add_argument("arm", type=Path, help="report of the arm, same clips, frames and avatars")
    parser.add_argument("--json", type=Path, help="write the paired differences here")
    args = parser.parse_args(argv)
    reports = []
    for path in (args.base, args.arm):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"can't read {path}: {exc}") from None
    try:
        result = compare(*reports, str(args.base), str(args.arm))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps({k: asdict(v) for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
