"""Where the per-frame graphs spend their time: ONNX Runtime's profiler on the keypoint and animate graphs
of a preset (paper-rt: the bundled weights), driven by real tracked frames of the bundled clip with a
bundled portrait as the avatar, as `reenact animate` runs them (the avatar side encoded once).

Time per operator type and per block of the model. Blocks come from the node names the exporter writes
(module paths; ONNX Runtime's fused nodes keep them); the few unnamed arithmetic nodes are placed by
where they run: before the dense-motion hourglass (heatmaps and sparse motions), between the mask and
the decoder (flow composition, occlusion multiplies), after the decoder's last convolution (the
warped-source blend and the motion outputs). The first run is a warm-up and is left out.

    python -m benchmarks.profile_ort --threads 1 --frames 30
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from reenact_common.scripts import run_script, write_report

log = logging.getLogger("profile_ort")

REPO = Path(__file__).resolve().parent.parent
DRIVING = REPO / "assets" / "driving" / "demo.mp4"
AVATAR = REPO / "assets" / "avatars" / "monalisa.jpg"

# (block, name fragment): the first fragment found in a node's name decides its block
NAMED_BLOCKS = (
    ("keypoints: anti-aliased downscale", "/down/"),
    ("keypoints: hourglass", "/predictor/"),
    ("keypoints: keypoint and jacobian heads", "/kp_detector/"),
    ("dense motion: hourglass", "/hourglass/"),
    ("dense motion: attention", "/attention/"),
    ("dense motion: mask head", "/mask/"),
    ("dense motion: occlusion heads (multi-scale)", "/occlusion_restoration/"),
    ("generator: bottleneck", "/bottleneck/"),
    ("generator: decoder up blocks", "/up_blocks."),
    ("generator: final conv", "/Sigmoid_output_0_nchwc"),
)
GRID_SAMPLES = {  # in the order the animate graph runs them
    "/GridSample": "grid sample: sparse motions (source x K+1, 64 px)",
    "/GridSample_1": "grid sample: feature warp (64 px)",
    "/GridSample_2": "grid sample: warped-source blend (256 px)",
}


def block_of(name: str, phase: str) -> str:
    if name in GRID_SAMPLES:
        return GRID_SAMPLES[name]
    if name.startswith("Reorder"):
        return "layout reorders (NCHWc)"
    for block, fragment in NAMED_BLOCKS:
        if fragment in name:
            return block
    return {
        "before": "dense motion: heatmaps and sparse motions",
        "middle": "flow composition, occlusion multiplies",
        "after": "warped-source blend, visibility, displacement",
    }[phase]


def runs_of(trace: list[dict]) -> list[tuple[float, list[dict]]]:
    """(wall ms, its kernel events in execution order) for every run but the first (a warm-up)."""
    runs = [e for e in trace if e.get("name") == "model_run"]
    if len(runs) < 2:
        raise RuntimeError("the profile holds fewer than two runs")
    nodes = sorted((e for e in trace if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    return [(run["dur"] / 1000, [e for e in nodes if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]])
            for run in runs[1:]]


def summarise(trace: list[dict]) -> dict:
    runs = runs_of(trace)
    by_op: dict[str, float] = defaultdict(float)
    by_block: dict[str, float] = defaultdict(float)
    for _, nodes in runs:
        phase = "before"
        for event in nodes:
            name = event["name"][: -len("_kernel_time")]
            if "/hourglass/" in name:
                phase = "middle"
            elif name.startswith("/Sigmoid_output_0_nchwc"):  # the generator's last convolution
                phase = "after"
            ms = event["dur"] / 1000 / len(runs)
            by_op[event["args"]["op_name"]] += ms
            by_block[block_of(name, phase)] += ms
    total = sum(by_op.values())

    def table(values: dict[str, float]) -> list[dict]:
        return [{"name": k, "ms": round(v, 3), "share": round(v / total, 4)}
                for k, v in sorted(values.items(), key=lambda kv: -kv[1])]

    return {"runs": len(runs), "run_ms_median": statistics.median(ms for ms, _ in runs), "node_ms_total": total,
            "by_op_type": table(by_op), "by_block": table(by_block)}


def profile(path: Path, feeds: list[dict], threads: int, prefix: Path) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for feed in feeds:
        session.run(None, feed)
    trace_path = Path(session.end_profiling())
    try:
        return summarise(json.loads(trace_path.read_text()))
    finally:
        trace_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-rt", help="paper-rt: the bundled weights; others: random weights")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--frames", type=int, default=30, help="driving frames (the first is a warm-up)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/profile-ort-PRESET-THREADSt.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from models import build_model, load_checkpoint
    from reenact_app.benchmarking import hardware
    from reenact_app.drive import make_croppers
    from reenact_app.engines.onnx_engine import OnnxRuntimeEngine, OrtOptions, ensure_export, image_to_array
    from reenact_app.images import load_avatar_image
    from reenact_app.session import AnimationSession, MotionSettings
    from reenact_common.video_io import iter_frames

    torch.manual_seed(0)
    model = load_checkpoint(None) if args.preset == "paper-rt" else build_model(args.preset).eval()
    folder = ensure_export(model)
    engine = OnnxRuntimeEngine(folder, OrtOptions(intra_op_threads=args.threads))
    croppers = make_croppers(True, model.config.image_size)
    try:
        session = AnimationSession(engine, MotionSettings(relative=True, adapt_scale=False))
        session.set_avatar(croppers.avatar(load_avatar_image(str(AVATAR))))
        crops = [croppers.frame(frame, i / 25.0).crop for i, frame in enumerate(iter_frames(DRIVING, args.frames))]
    finally:
        croppers.close()
    kp_feeds = [{"image": image_to_array(crop)} for crop in crops]
    animate_feeds = [{**session.source.tensors, **engine._kp_feed(session.driving_keypoints(crop), "kp_driving")}
                     for crop in crops]
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {
            "kp_detector": profile(folder / engine.manifest.files["kp_detector"], kp_feeds, args.threads,
                                   Path(tmp) / "kp"),
            "animate": profile(folder / engine.manifest.files["animate"], animate_feeds, args.threads,
                               Path(tmp) / "animate"),
        }
    engine.close()
    for graph, result in graphs.items():
        print(f"\n{args.preset} {graph}, {args.threads} thread(s): median run {result['run_ms_median']:.1f} ms "
              f"(node time {result['node_ms_total']:.1f} ms)")
        print("| block | ms | share |\n|---|---|---|")
        for row in result["by_block"]:
            print(f"| {row['name']} | {row['ms']:.2f} | {100 * row['share']:.1f}% |")
        print("| operator type | ms | share |\n|---|---|---|")
        for row in result["by_op_type"][:8]:
            print(f"| {row['name']} | {row['ms']:.2f} | {100 * row['share']:.1f}% |")
    report = {"kind": "ort-profile", "preset": args.preset, "threads": args.threads, "frames": args.frames,
              "weights": "bundled" if args.preset == "paper-rt" else "random", "hardware": hardware(),
              "load_average": os.getloadavg(), "graphs": graphs}
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"profile-ort-{args.preset}-{args.threads}t.json"
    write_report(out, report, indent=2)
    return 0


if __name__ == "__main__":
    run_script(main)
