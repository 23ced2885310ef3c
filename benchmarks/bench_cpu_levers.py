"""CPU levers for the per-frame model work: ONNX Runtime fp32 (the default), ONNX Runtime int8 animate,
PyTorch fp32, and PyTorch with oneDNN bf16 (autocast, channels-last) for animate, keypoints fp32.

Speed: one thread, every variant once per round (interleaved), process CPU time and wall time per frame
(keypoints + animate). Parity: each variant against PyTorch fp32 on held-out real frames (the bundled
clip driving a bundled portrait, as the int8 gate checks), mean and max |difference| in grey levels.
The CPU's bf16 support (avx512_bf16, amx_bf16 in /proc/cpuinfo) is recorded: without it oneDNN emulates
bf16 and is slow.

    python -m benchmarks.bench_cpu_levers --weights bundled --rounds 8
    python -m benchmarks.bench_cpu_levers --preset fomm-vox256 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from pathlib import Path

import numpy as np

from reenact_common.scripts import write_report

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench_cpu_levers")


def cpu_bf16_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "amx_int8"))


class Bf16Animate:
    """PyTorch, channels-last; animate under oneDNN bf16 autocast, keypoints in fp32 (they place the warp)."""

    def __init__(self, model):
        import torch

        self.torch = torch
        self.model = copy.deepcopy(model).eval()
        self.model.kp_detector.to(memory_format=torch.channels_last)
        self.model.generator.to(memory_format=torch.channels_last)

    def _image(self, image: np.ndarray):
        from reenact_app.engines.torch_engine import to_tensor

        torch = self.torch
        return to_tensor(image, torch.device("cpu"), torch.float32).contiguous(memory_format=torch.channels_last)

    def encode_source(self, image: np.ndarray) -> dict:
        torch = self.torch
        with torch.inference_mode():
            source = self._image(image)
            state = self.model.generator.encode_source(source, self.model.kp_detector(source))
        return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in state.items()}

    def frame(self, state: dict, image: np.ndarray) -> np.ndarray:
        from reenact_app.engines.torch_engine import to_image

        torch = self.torch
        with torch.inference_mode():
            kp = self.model.kp_detector(self._image(image))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                prediction = self.model.generator.animate(state, kp)["prediction"]
        return to_image(prediction)


class EngineFrame:
    def __init__(self, engine):
        self.engine = engine

    def encode_source(self, image):
        return self.engine.encode_source(image)

    def frame(self, state, image):
        return self.engine.animate(state, self.engine.detect_keypoints(image))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-rt")
    parser.add_argument("--weights", choices=("random", "bundled"), default="random",
                        help="bundled: the shipped paper-rt weights (parity means something only with them)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", help="JSON path (default benchmarks/results/cpu-levers-NAME.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import tempfile

    import torch

    from export.frames import sample_frames
    from export.int8_gate import GATE_PORTRAIT, HELD_OUT_OFFSET, HELD_OUT_STEP, bundled_portrait
    from models import build_model, load_checkpoint
    from reenact_app.benchmarking import hardware
    from reenact_app.engines.onnx_engine import OnnxRuntimeEngine, OrtOptions, ensure_export
    from reenact_app.engines.torch_engine import TorchEngine

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_checkpoint(None) if args.weights == "bundled" else build_model(args.preset).eval()
    name = "bundled-" + (model.metadata or {}).get("preset", "weights") if args.weights == "bundled" else args.preset
    size = model.config.image_size
    avatar = bundled_portrait(size, GATE_PORTRAIT)
    frames = sample_frames(None, 8, size, offset=HELD_OUT_OFFSET, step=HELD_OUT_STEP)
    with tempfile.TemporaryDirectory() as cache:
        folder = ensure_export(model, Path(cache), quantized=True)
        variants = {
            "onnxruntime-fp32": EngineFrame(OnnxRuntimeEngine(folder, OrtOptions(intra_op_threads=1))),
            "onnxruntime-int8-animate": EngineFrame(OnnxRuntimeEngine(folder, OrtOptions(intra_op_threads=1,
                                                                                         quantized=True))),
            "torch-fp32": EngineFrame(TorchEngine(model)),
            "torch-bf16-animate": Bf16Animate(model),
        }
        states = {n: v.encode_source(avatar) for n, v in variants.items()}
        outputs = {n: [v.frame(states[n], f) for f in frames] for n, v in variants.items()}
        parity = {}
        for n in variants:
            diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(outputs[n], outputs["torch-fp32"])]
            parity[n] = {"mean_grey_levels": float(np.mean([d.mean() for d in diffs])),
                         "max_grey_levels": int(max(d.max() for d in diffs))}
        cpu = {n: [] for n in variants}
        wall = {n: [] for n in variants}
        for r in range(args.rounds):
            for n, variant in variants.items():
                frame = frames[r % len(frames)]
                c0, t0 = time.process_time(), time.perf_counter()
                variant.frame(states[n], frame)
                cpu[n].append(time.process_time() - c0)
                wall[n].append(time.perf_counter() - t0)
    rows = {}
    for n in variants:
        rows[n] = {"cpu_ms_median": 1000 * float(np.median(cpu[n])), "cpu_ms_min": 1000 * float(np.min(cpu[n])),
                   "wall_ms_median": 1000 * float(np.median(wall[n])), **parity[n]}
        rows[n]["speed_vs_onnxruntime_fp32_cpu"] = (
            float(np.median(cpu["onnxruntime-fp32"])) / max(float(np.median(cpu[n])), 1e-9))
        print(f"{name} {n}: CPU {rows[n]['cpu_ms_median']:.1f} ms/frame (min {rows[n]['cpu_ms_min']:.1f}), "
              f"wall {rows[n]['wall_ms_median']:.1f}, {rows[n]['speed_vs_onnxruntime_fp32_cpu']:.2f}x ONNX Runtime fp32; "
              f"vs PyTorch fp32 mean {rows[n]['mean_grey_levels']:.3f}, max {rows[n]['max_grey_levels']} grey levels")
    report = {"kind": "cpu-levers", "model": name, "weights": args.weights, "threads": 1, "rounds": args.rounds,
              "hardware": hardware(), "cpu_flags": cpu_bf16_flags(), "parity_frames": len(frames),
              "parity_reference": "PyTorch fp32; held-out bundled-clip frames driving a bundled portrait",
              "variants": rows}
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"cpu-levers-{name}.json"
    write_report(out, report, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
