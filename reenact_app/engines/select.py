"""Engine selection: `create_engine(...)` builds the requested engine or the best available one.

Order for `engine="auto"` (fastest first): TensorRT > ONNX Runtime CUDA > PyTorch CUDA graphs > PyTorch
CUDA > ONNX Runtime CPU > PyTorch CPU. The CUDA-graph engine captures its graphs when it is built, so a
capture that fails is a failed start and the plain PyTorch CUDA engine is next. Every candidate that is skipped is logged with the reason (and kept in
`engine.selection`), so "why is it slow?" has an answer in the log. The returned engine is wrapped in a
`FallbackEngine` whenever slower candidates remain: if the active engine throws mid-run (CUDA out of
memory, a driver reset), the next candidate takes over, the avatar is re-encoded, and `engine.notice`
says what happened (the GUI shows it; listeners get a callback).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models import ReenactModel, load_checkpoint
from reenact_app.engines.base import Animation, Engine, Keypoints, SourceState
from reenact_common.errors import EngineError

log = logging.getLogger(__name__)

# Concrete candidates, fastest first.
CHAIN = ("tensorrt", "onnxruntime-cuda", "torch-cudagraph", "torch-cuda", "onnxruntime-cpu", "torch-cpu")
# What each user-facing name may use, in order. "auto" may use everything.
ALIASES: dict[str, tuple[str, ...]] = {
    "auto": CHAIN,
    "tensorrt": ("tensorrt",),
    "onnxruntime": ("onnxruntime-cuda", "onnxruntime-cpu"),
    "torch": ("torch-cuda", "torch-cpu"),
    "onnxruntime-int8": ("onnxruntime-int8",),
    **{name: (name,) for name in CHAIN},
}
ENGINE_NAMES = tuple(ALIASES)
LABELS = {
    "tensorrt": "TensorRT",
    "onnxruntime-cuda": "ONNX Runtime CUDA",
    "torch-cudagraph": "PyTorch CUDA graphs",
    "torch-cuda": "PyTorch CUDA",
    "onnxruntime-cpu": "ONNX Runtime CPU",
    "onnxruntime-int8": "ONNX Runtime CPU int8",
    "torch-cpu": "PyTorch CPU",
}


@dataclass(frozen=True)
class EngineOptions:
    """Knobs shared by the engines; defaults are what `reenact animate` and the GUI use."""

    cache_dir: Path | None = None  # exported graphs and TensorRT engines (default ~/.cache/reenact)
    threads: int = 0  # CPU intra-op threads (0: every core this process may use)
    keypoint_threads: int = 0  # ONNX Runtime CPU: the keypoint graph's own intra-op threads (0: as `threads`)
    torch_compile: bool = False  # torch.compile on CUDA (slow first frames, faster after); the CUDA-graph
    # engine then uses torch.compile(mode="reduce-overhead") instead of its own capture
    device_index: int = 0
    runtime_fallback: bool = True  # wrap in FallbackEngine when slower candidates remain
    # ONNX Runtime CPU with the int8 animate graph where it passes the parity gate (export/int8_gate.py);
    # `onnxruntime-int8` always asks for it. A model that fails the gate runs fp32, said in the log.
    cpu_int8: bool = False
    int8_gate: Any = None  # export.int8_gate.Int8Gate; None: its defaults


# -- availability probes (module-level so tests can monkeypatch them) ------------------------------
def cuda_status() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible to PyTorch (CPU-only torch build or no driver)"
    return True, torch.cuda.get_device_name(0)


def ort_cuda_status() -> tuple[bool, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return False, f"ONNX Runtime has no CUDA provider (install onnxruntime-gpu); has {providers}"
    return cuda_status()


def ort_cpu_status() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, "onnxruntime is not installed"
    return True, "available"


def tensorrt_status() -> tuple[bool, str]:
    from export.tensorrt_build import tensorrt_status as status

    return status()


def _probe(candidate: str) -> tuple[bool, str]:
    probes: dict[str, Callable[[], tuple[bool, str]]] = {
        "tensorrt": tensorrt_status,
        "onnxruntime-cuda": ort_cuda_status,
        "torch-cudagraph": cuda_status,
        "torch-cuda": cuda_status,
        "onnxruntime-cpu": ort_cpu_status,
        "onnxruntime-int8": ort_cpu_status,
        "torch-cpu": lambda: (True, "available"),
    }
    return probes[candidate]()


def first_available(engine: str) -> str | None:
    """The candidate `create_engine(model, engine)` tries first here (None: none is available); lets a
    caller tell ahead whether that engine needs the ONNX export without building anything."""
    if engine not in ALIASES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_NAMES)}")
    for candidate in ALIASES[engine]:
        try:
            if _probe(candidate)[0]:
                return candidate
        except Exception:  # noqa: BLE001 - a broken probe counts as "not available"
            continue
    return None


# -- builders ---------------------------------------------------------------------------------------
def _cache_dir(options: EngineOptions) -> Path:
    from reenact_app.engines.onnx_engine import default_cache_dir

    return Path(options.cache_dir) if options.cache_dir else default_cache_dir()


def build_candidate(candidate: str, model: ReenactModel, options: EngineOptions) -> Engine:
    """Construct one concrete engine; raises on any failure (the caller decides whether to fall back)."""
    if candidate == "tensorrt":
        from reenact_app.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(model, _cache_dir(options) , options.device_index)
    if candidate == "torch-cudagraph":
        from reenact_app.engines.cuda_graph_engine import CudaGraphEngine, GraphOptions

        mode = "compile" if options.torch_compile else "cudagraph"
        return CudaGraphEngine(model, GraphOptions(device=f"cuda:{options.device_index}", mode=mode))
    if candidate in ("torch-cuda", "torch-cpu"):
        from reenact_app.engines.torch_engine import TorchEngine

        device = f"cuda:{options.device_index}" if candidate == "torch-cuda" else "cpu"
        return TorchEngine(model, device=device, compile=options.torch_compile and candidate == "torch-cuda",
                           threads=options.threads)
    if candidate.startswith("onnxruntime"):
        from reenact_app.engines.onnx_engine import OnnxRuntimeEngine, OrtOptions, ensure_export

        int8 = candidate == "onnxruntime-int8" or (candidate == "onnxruntime-cpu" and options.cpu_int8)
        folder = ensure_export(model, _cache_dir(options), quantized=int8)
        int8 = int8 and int8_passes_gate(model, folder, options)
        ort_options = OrtOptions(
            device="cuda" if candidate == "onnxruntime-cuda" else "cpu",
            intra_op_threads=options.threads, keypoint_threads=options.keypoint_threads, quantized=int8,
            cuda_device_id=options.device_index,
        )
        return OnnxRuntimeEngine(folder, ort_options)
    raise EngineError(f"unknown engine candidate {candidate!r}")


def int8_passes_gate(model: ReenactModel, folder: Path, options: EngineOptions) -> bool:
    """int8 only where its error against fp32, measured on real frames, is within the gate; else fp32."""
    from export.int8_gate import Int8Gate, int8_parity

    gate = options.int8_gate or Int8Gate()
    parity = int8_parity(model, folder, gate)
    if parity.passes(gate):
        log.info(parity.line(gate))
        return True
    log.warning("%s: using the fp32 animate graph", parity.line(gate))
    return False


@dataclass
class Selection:
    """Why the engine is what it is: one (candidate, outcome) line per candidate considered."""

    chosen: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{LABELS[c]}: skipped ({why})" for c, why in self.skipped]
        if self.chosen:
            lines.append(f"{LABELS[self.chosen]}: selected")
        return "; ".join(lines)


def _first_working(
    candidates: tuple[str, ...], model: ReenactModel, options: EngineOptions, selection: Selection
) -> tuple[Engine, int]:
    for index, candidate in enumerate(candidates):
        ok, reason = _probe(candidate)
        if not ok:
            # absent hardware or runtime is no news on most machines: --verbose shows it, and
            # Selection.summary keeps it for `reenact bench` and the GUI's engine details
            log.debug("engine %s skipped: %s", LABELS[candidate], reason)
            selection.skipped.append((candidate, reason))
            continue
        try:
            engine = build_candidate(candidate, model, options)
        except Exception as exc:
            reason = f"failed to start: {exc}"
            log.warning("engine %s skipped: %s", LABELS[candidate], reason)
            selection.skipped.append((candidate, reason))
            continue
        selection.chosen = candidate
        log.info("engine: %s", engine.describe())
        return engine, index
    raise EngineError("no inference engine could start: " + selection.summary())


def create_engine(
    model: ReenactModel | str | Path | None = None,
    engine: str = "auto",
    config: str | Path | None = None,
    options: EngineOptions | None = None,
) -> Engine:
    """`model` is a loaded model, a checkpoint path, or None for the bundled weights.

    engine: "auto" (best available, see module doc), "tensorrt", "onnxruntime" (CUDA, else CPU),
    "torch" (CUDA, else CPU), or a concrete candidate ("onnxruntime-cpu", "onnxruntime-int8", "torch-cpu", ...).
    """
    if engine not in ALIASES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_NAMES)}")
    options = options or EngineOptions()
    if not isinstance(model, ReenactModel):
        model = load_checkpoint(model, config)
    candidates = ALIASES[engine]
    selection = Selection()
    chosen, index = _first_working(candidates, model, options, selection)
    chosen.selection = selection
    rest = candidates[index + 1 :]
    if options.runtime_fallback and rest:
        return FallbackEngine(chosen, rest, model, options, selection)
    return chosen


class FallbackEngine(Engine):
    """Delegates to the active engine; on an exception mid-run switches to the next candidate.

    The switch re-encodes the avatar with the new engine (a SourceState is engine-specific): the
    caller's SourceState object is updated in place, so an AnimationSession keeps working unchanged.
    `notice` holds a one-line, user-facing explanation of the last switch; `listeners` are called
    with it (from the thread that ran the failing call).

    Two threads may call it at once (the pipelined driving loop detects keypoints beside `animate`):
    a switch happens under a lock and only once per failed engine, so when both threads see the same
    engine fail, the second one retries on the engine the first one switched to.
    """

    def __init__(
        self,
        active: Engine,
        remaining: tuple[str, ...],
        model: ReenactModel,
        options: EngineOptions,
        selection: Selection | None = None,
        builder: Callable[[str, ReenactModel, EngineOptions], Engine] | None = None,
    ):
        self.active = active
        self.remaining = list(remaining)
        self.model = model
        self.options = options
        self.selection = selection or Selection()
        self._builder = builder or build_candidate
        self.notice: str | None = None
        self.listeners: list[Callable[[str], None]] = []
        self.failures: list[tuple[str, str]] = []
        self.exhausted: EngineError | None = None  # set once every engine has failed
        self._switch_lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.active.name

    @property
    def device(self) -> str:  # type: ignore[override]
        return self.active.device

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.active.image_size

    def describe(self) -> str:
        return self.active.describe()

    def _switch_from(self, engine: Engine, exc: BaseException) -> None:
        """Switch away from `engine`, which failed, unless another thread already did."""
        with self._switch_lock:
            if self.exhausted is not None:
                raise self.exhausted from exc
            if self.active is engine:
                self._switch(exc)

    def _switch(self, exc: BaseException) -> None:
        failed = self.active.describe()
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip(": ")
        self.failures.append((failed, reason))
        try:
            self.active.close()
        except Exception:  # pragma: no cover - best effort
            pass
        while self.remaining:
            candidate = self.remaining.pop(0)
            ok, why = _probe(candidate)
            if not ok:
                continue
            try:
                self.active = self._builder(candidate, self.model, self.options)
            except Exception as build_exc:
                log.warning("fallback %s failed to start: %s", LABELS.get(candidate, candidate), build_exc)
                continue
            self.notice = f"{failed} failed ({reason}); switched to {self.active.describe()}"
            log.warning(self.notice)
            for listener in list(self.listeners):
                try:
                    listener(self.notice)
                except Exception:  # pragma: no cover - a broken listener must not stop inference
                    log.exception("fallback listener failed")
            return
        self.exhausted = EngineError(f"{failed} failed ({reason}) and no fallback engine is left")
        raise self.exhausted from exc

    def _call(self, method: str, *args):
        if self.exhausted is not None:  # don't re-call a closed engine (and log a traceback) every frame
            raise self.exhausted
        while True:
            engine = self.active
            try:
                return getattr(engine, method)(*args)
            except EngineError:
                raise
            except Exception as exc:  # CUDA OOM, runtime errors of any backend
                log.exception("engine %s failed in %s", engine.describe(), method)
                self._switch_from(engine, exc)
                args = tuple(self._refresh(a) for a in args)

    def _refresh(self, arg):
        if isinstance(arg, SourceState) and arg.tensors.get("_engine") is not self.active:
            fresh = self.encode_source(arg.image)
            arg.keypoints, arg.tensors = fresh.keypoints, fresh.tensors
        return arg

    def encode_source(self, image: np.ndarray) -> SourceState:
        state = self._call("encode_source", image)
        state.tensors["_engine"] = self.active
        return state

    def detect_keypoints(self, image: np.ndarray) -> Keypoints:
        return self._call("detect_keypoints", image)

    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        source = self._refresh(source)
        tensors = {k: v for k, v in source.tensors.items() if k != "_engine"}
        view = SourceState(image=source.image, keypoints=source.keypoints, tensors=tensors)
        return self._call_animate(source, view, kp_driving)

    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        source = self._refresh(source)
        tensors = {k: v for k, v in source.tensors.items() if k != "_engine"}
        view = SourceState(image=source.image, keypoints=source.keypoints, tensors=tensors)
        return self._call_animate(source, view, kp_driving, "animate_with_motion")

    def _call_animate(self, source: SourceState, view: SourceState, kp_driving: Keypoints, method: str = "animate"):
        if self.exhausted is not None:
            raise self.exhausted
        while True:
            engine = self.active
            try:
                return getattr(engine, method)(view, kp_driving)
            except EngineError:
                raise
            except Exception as exc:
                log.exception("engine %s failed in animate", engine.describe())
                self._switch_from(engine, exc)
                self._refresh(source)
                view = SourceState(
                    image=source.image, keypoints=source.keypoints,
                    tensors={k: v for k, v in source.tensors.items() if k != "_engine"},
                )

    def close(self) -> None:
        self.active.close()
