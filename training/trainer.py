"""The training loop: FOMM losses + the landmark teacher, DDP via torchrun, checkpoints that resume exactly.

Determinism: weights are initialised from `seed`; batches are a pure function of (seed, step, rank) (see
`training.dataset.StepSampler`) and so are the random TPS warps, so a resumed run continues on the same
trajectory as an uninterrupted one without saving any RNG state.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models import build_model, load_checkpoint, save_checkpoint
from reenact_common.errors import CheckpointError, ConfigError
from training.config import TrainConfig, save_train_config
from training.dataset import PairDataset, StepSampler, keypoint_targets
from training.losses import RandomTPS, ReconstructionLoss, VGG19Features, equivariance_losses
from training.cross_identity import cross_identity_motion
from training.keypoint_growth import grow_keypoints, nearest_parents
from training.local_affine import (canonical_mesh, jacobian_landmark_loss, local_affine_targets,
                                   mirrored_neighbourhoods, neighbourhoods)
from training.teacher import keypoint_landmark_loss, keypoint_weight, motion_loss

log = logging.getLogger(__name__)


class TrainingModel(nn.Module):
    """Keypoint detector + generator + losses in one module, so DDP wraps one forward per step."""

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, config: TrainConfig, vgg: VGG19Features | None,
                 neighbourhoods: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.config = config
        # (K, n) mesh indices per keypoint, plain and for flipped samples: the jacobian term's fits
        self.has_neighbourhoods = neighbourhoods is not None
        if neighbourhoods is not None:
            self.register_buffer("neighbourhoods", neighbourhoods[0].long(), persistent=False)
            self.register_buffer("mirrored_neighbourhoods", neighbourhoods[1].long(), persistent=False)
        face = None
        if any(config.loss.face_perceptual):
            from training.face_features import FaceMeshFeatures

            face = FaceMeshFeatures()
        self.reconstruction = ReconstructionLoss(config.scales, config.loss, vgg, face)

    def forward(self, batch: dict[str, torch.Tensor], step: int, rank: int = 0) -> tuple[dict, dict]:
        cfg, teacher = self.config, self.config.teacher
        source, driving = batch["source"], batch["driving"]
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        extras = {"kp_source": kp_source, "kp_driving": kp_driving}
        losses: dict[str, torch.Tensor] = {}
        warm = teacher.enabled and step < teacher.warmup_steps
        if teacher.enabled:
            weight = teacher.keypoint_weight_start if warm else keypoint_weight(teacher, step)
            if weight:
                term = 0
                for kp, key in ((kp_source, "source"), (kp_driving, "driving")):
                    targets = keypoint_targets(batch[f"{key}_landmarks"], teacher.landmark_indices, batch["flipped"])
                    term = term + keypoint_landmark_loss(kp["value"], targets, batch[f"{key}_found"])
                losses["teacher_keypoints"] = weight * term / 2
        # What drives the generator and where the landmarks must go: the driving frame itself on same-clip
        # pairs; on cross-identity pairs the driver's motion since its neutral frame (training/cross_identity.py)
        kp_motion, target_landmarks = kp_driving, batch["driving_landmarks"]
        motion_found = batch["source_found"] & batch["driving_found"]
        cross = batch.get("cross")
        if cross is not None:
            kp_motion, target_landmarks, motion_found = cross_identity_motion(batch, kp_source, kp_driving,
                                                                              self.kp_detector)
        if teacher.enabled and teacher.jacobian_weight and self.has_neighbourhoods and "jacobian" in kp_source:
            targets, valid = local_affine_targets(target_landmarks, batch["source_landmarks"],
                                                  self.neighbourhoods, self.mirrored_neighbourhoods, batch["flipped"])
            losses["teacher_jacobians"] = teacher.jacobian_weight * jacobian_landmark_loss(
                kp_source["jacobian"], kp_motion["jacobian"], targets, valid, motion_found)
        if warm:
            return losses, extras

        generated = self.generator(source, kp_driving=kp_motion, kp_source=kp_source)
        extras["generated"] = generated
        if cross is None:
            losses.update(self.reconstruction(generated["prediction"], driving))
        elif bool((~cross).any()):  # no target image on cross-identity rows: no pixel loss there
            same = (~cross).nonzero().squeeze(1)
            losses.update(self.reconstruction(generated["prediction"][same], driving[same]))
        else:  # only cross rows: a zero term keeps the decoder in the graph (DDP expects every gradient)
            losses["pixel_free_batch"] = generated["prediction"].sum() * 0.0

        w = cfg.loss
        if w.equivariance_value or w.equivariance_jacobian:
            rng = torch.Generator().manual_seed(_mix(cfg.seed, step, rank))
            tps = RandomTPS(driving.shape[0], cfg.tps_sigma_affine, cfg.tps_sigma_tps, cfg.tps_points, driving, rng)
            kp_transformed = self.kp_detector(tps.warp_image(driving))
            losses.update(equivariance_losses(kp_driving, kp_transformed, tps, w.equivariance_value, w.equivariance_jacobian))

        if teacher.enabled and teacher.motion_weight:
            n = 468 if teacher.motion_landmarks == "mesh" else batch["driving_landmarks"].shape[1]
            losses["teacher_motion"] = teacher.motion_weight * motion_loss(
                generated["deformation"].float(), target_landmarks[:, :n], batch["source_landmarks"][:, :n],
                motion_found,
            )
        return losses, extras


def open_occlusion_heads(generator: nn.Module, bias: float) -> int:
    """Set the bias of the multi-scale occlusion heads above the dense-motion resolution; returns how many."""
    restoration = getattr(getattr(generator, "dense_motion_network", None), "occlusion_restoration", None)
    if restoration is None:
        log.warning("occlusion_init_bias is set but the model has no multi-scale occlusion: ignored")
        return 0
    with torch.no_grad():
        for head in restoration.heads[1:]:
            head.bias.fill_(bias)
    return len(restoration.heads) - 1


def _mix(*values: int) -> int:
    """Stable 63-bit seed from integers (same on every machine and Python run)."""
    h = 1469598103934665603
    for v in values:
        h = ((h ^ (int(v) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


# ------------------------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on CUDA. One process: nothing to do."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(requested: str | None, local_rank: int) -> torch.device:
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
        return device
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def _distributed(module: nn.Module, dist_info: Dist, device: torch.device, **options) -> nn.Module:
    """The module wrapped in DistributedDataParallel under torchrun; itself in a single process."""
    if dist_info.world_size <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None, **options)


def sync_buffers(module: nn.Module, dist_info: Dist) -> None:
    """BatchNorm running stats from rank 0 (DDP syncs them at each forward, so the last step leaves them apart)."""
    if dist_info.world_size <= 1:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


# ------------------------------------------------------------------------------------------- checkpoints
def _apply_schedule(optimizer, scheduler, config: TrainConfig, milestones: list[int], step: int) -> None:
    """Make a resumed run follow *its* config's lr, betas and schedule, not the checkpoint's.

    Why: a long run is often finished with a lower learning rate (edit lr/max_steps/lr_milestones and
    resume); the optimizer and scheduler state saved in the checkpoint would silently keep the old ones.
    """
    from collections import Counter

    lr_now = config.lr * config.lr_gamma ** sum(1 for m in milestones if m <= step)
    scheduler.milestones = Counter(milestones)
    scheduler.gamma = config.lr_gamma
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["betas"] = config.betas
        group["initial_lr"] = config.lr
        group["lr"] = lr_now
    scheduler._last_lr = [lr_now for _ in optimizer.param_groups]


def _state(tm: TrainingModel, optimizer, scheduler, step: int, best: dict, config: TrainConfig,
           adversary: "_AdversaryState | None" = None) -> dict:
    state = {
        "step": step,
        "kp_detector": tm.kp_detector.state_dict(),
        "generator": tm.generator.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best": json.dumps(best),
        "config": json.dumps(config.to_dict()),
    }
    if adversary is not None:
        state.update(adversary.state_dict())
    return state


@dataclass
class _AdversaryState:
    """The discriminator (GAN mode) and its own Adam, saved next to the generator's; its learning rate
    follows the generator's schedule (set every step), so it needs no scheduler of its own."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    warmup_steps: int = 0
    updates: int = 0  # discriminator updates so far, saved: the generator's ramp (gan.warmup_steps) resumes

    @classmethod
    def build(cls, config: TrainConfig, device: torch.device) -> "_AdversaryState":
        from training.discriminator import Adversary

        module = Adversary(config.gan).to(device)
        module.train()
        optimizer = torch.optim.Adam(module.parameters(), lr=config.lr, betas=config.betas)
        return cls(module, optimizer, config.gan.warmup_steps)

    @property
    def generator_weight(self) -> float:
        """Scale of the generator's adversarial terms now: 0 -> 1 over the first `warmup_steps` updates."""
        return min(1.0, self.updates / self.warmup_steps) if self.warmup_steps else 1.0

    def state_dict(self) -> dict:
        return {"discriminator": self.module.state_dict(), "optimizer_discriminator": self.optimizer.state_dict(),
                "discriminator_updates": torch.tensor(self.updates)}

    def load(self, state: dict, config: TrainConfig) -> None:
        if "discriminator" not in state:
            log.info("the checkpoint has no discriminator (GAN switched on now): starting one from scratch")
            return
        self.module.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer_discriminator"])
        self.updates = int(state.get("discriminator_updates", self.warmup_steps))  # older states: ramp done
        for group in self.optimizer.param_groups:
            group["betas"] = config.betas

    def step(self, real: torch.Tensor, fake: torch.Tensor, net: nn.Module, lr: float, autocast) -> dict[str, float]:
        """One discriminator update on this step's pair (the generator's gradients left on it are dropped)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            losses = net(real, fake, "discriminator")
        sum(losses.values()).backward()
        self.optimizer.step()
        self.updates += 1
        return {k: float(v.detach()) for k, v in losses.items()}


def save_training_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_training_state(path: Path) -> dict:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"can't read training checkpoint {path}: {exc}; delete it or start without --resume") from None


def export_model(tm: TrainingModel, model_config, path: Path, extra: dict[str, str]) -> Path:
    """Project format (safetensors + config metadata) from the training modules; BatchNorm stats included."""
    from models.checkpoint import ReenactModel

    model = ReenactModel(tm.kp_detector, tm.generator, model_config)
    return save_checkpoint(model, path, extra)


# ------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validation_loss(tm: TrainingModel, loader, device: torch.device) -> dict[str, float]:
    """Reconstruction L1 and the teacher's motion error on fixed held-out pairs (eval mode, same every time)."""
    was_training = tm.training
    tm.eval()
    l1 = motion = 0.0
    count = motion_count = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        kp_s, kp_d = tm.kp_detector(batch["source"]), tm.kp_detector(batch["driving"])
        out = tm.generator(batch["source"], kp_driving=kp_d, kp_source=kp_s)
        n = batch["source"].shape[0]
        l1 += (out["prediction"] - batch["driving"]).abs().mean().item() * n
        count += n
        found = batch["source_found"] & batch["driving_found"]
        if found.any():
            m = motion_loss(out["deformation"].float(), batch["driving_landmarks"], batch["source_landmarks"], found)
            motion += m.item() * int(found.sum())
            motion_count += int(found.sum())
    tm.train(was_training)
    result = {"val_l1": l1 / max(count, 1)}
    if motion_count:
        result["val_motion"] = motion / motion_count
    return result


def _reference_cache():
    try:
        from training.evaluate import ReferenceCache
    except Exception:  # pragma: no cover - dlib missing: dlib_evaluation reports it
        return None
    return ReferenceCache()


def dlib_evaluation(tm: TrainingModel, model_config, data: Path, options: "TrainOptions", image_size: int,
                    cache: object = None) -> dict[str, float] | None:
    """FOMM reconstruction metrics (dlib AKD/AED, not the teacher) when training.evaluate and dlib are usable.

    `cache` (a training.evaluate.ReferenceCache) keeps the model-independent half across evaluations."""
    try:
        from models.checkpoint import ReenactModel
        from training.evaluate import evaluate
    except Exception as exc:  # pragma: no cover - depends on optional packages
        log.info("dlib evaluation unavailable (%s); selecting checkpoints by validation loss", exc)
        return None
    model = ReenactModel(tm.kp_detector, tm.generator, model_config)
    try:
        report = evaluate(model, Path(options.eval_data) if options.eval_data else data,
                          max_clips=options.eval_clips or None, max_frames=options.eval_frames or None,
                          progress=False, image_size=image_size, spread=options.eval_spread, cache=cache)
    except Exception as exc:
        log.warning("evaluation failed (%s); selecting checkpoints by validation loss", exc)
        return None
    out = {f"eval_{k}": float(v) for k, v in report.model.to_dict().items() if isinstance(v, (int, float))}
    out.update({f"static_{k}": float(v) for k, v in report.baseline.to_dict().items() if isinstance(v, (int, float))})
    out.update({f"eval_{k}_clip_se": v for k, v in report.clip_standard_error().items()})
    return out


# ------------------------------------------------------------------------------------------- loop
@dataclass
class TrainOptions:
    """Run-level options that are not part of the model recipe."""

    publish: str = ""  # copy best.safetensors here whenever it improves (e.g. assets/weights/default.safetensors)
    eval_every: int = 0  # steps between dlib evaluations (0: off)
    eval_clips: int = 0
    eval_frames: int = 32
    eval_spread: bool = False  # eval_frames evenly spaced over each clip instead of the first ones
    eval_data: str = ""  # folder with test/ for the dlib evaluation (default: the training data's)
    stop_after_s: float = 0.0  # stop (with a checkpoint) after this many seconds of this invocation
    stop_at_step: int = 0  # stop (with a checkpoint) at this step; the schedule still follows max_steps
    init_step: int = 0  # with `init`: the step the weights reached, so LR and teacher schedules continue there


class _StopOnSignal:
    """SIGTERM/SIGINT finish the current step, save a checkpoint and return (so `kill PID` loses nothing)."""

    def __init__(self) -> None:
        import signal
        import threading

        self.requested = False
        self._previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        log.warning("signal %d: stopping after this step (checkpoint first)", signum)
        self.requested = True

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _append_metrics(path: Path, step: int, elapsed: float, split: str, values: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["step", "elapsed_s", "split", "name", "value"])
        for name, value in values.items():
            writer.writerow([step, f"{elapsed:.1f}", split, name, f"{value:.6g}"])


def train(config: TrainConfig, data: str | Path, out: str | Path, resume: bool = False, init: str | Path | None = None,
          device: str | None = None, options: TrainOptions | None = None) -> dict:
    """Train until config.max_steps (or options.stop_after_s); returns a summary dict."""
    run = _TrainingRun(config, Path(data), Path(out), options or TrainOptions(), device)
    run.build_model(init)
    run.build_optimiser()
    run.restore(resume, init)
    run.distribute()
    run.open_data()
    return run.loop()


def _configure_device(device: str | None) -> tuple[torch.device, Dist]:
    """The device of this rank (torchrun's LOCAL_RANK) with the fast CUDA kernels on, and the process group."""
    dev = pick_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest convolution kernels once
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts outside autocast
        torch.backends.cudnn.allow_tf32 = True
    return dev, setup_distributed(dev)


class _TrainingRun:
    """One invocation of `train`, as named steps: device, model (+ init), optimiser, resume, DDP, data,
    then the loop (step, progress, samples, validation and selection, checkpoint or stop)."""

    def __init__(self, config: TrainConfig, data: Path, out: Path, options: TrainOptions, device: str | None):
        self.data, self.out, self.options = data, out, options
        self.dev, self.dist = _configure_device(device)
        if config.threads:
            torch.set_num_threads(config.threads)
        config.validate()
        self.config = config
        self.model_config = config.model_config()
        self.last_path = out / "checkpoints" / "last.pt"
        self.metrics_path = out / "metrics.csv"
        self.start_step, self.best = 0, {}

    # -- set-up ----------------------------------------------------------------------------------
    def build_model(self, init: str | Path | None) -> None:
        """Seeded weights (or `init`'s), the losses around them; no VGG weights: L1 + SSIM + gradients."""
        config, model_config = self.config, self.model_config
        torch.manual_seed(config.seed)
        model = build_model(model_config)
        if config.occlusion_init_bias is not None:  # an init: weights loaded below (--init, --resume) replace it
            open_occlusion_heads(model.generator, config.occlusion_init_bias)
        if init:
            # The warped-source blend has no weights: a file with it on or off initialises a run either way.
            source = load_checkpoint(init).set_warped_source_blend(model_config.generator.warped_source_blend)
            if source.config != model_config and self._can_grow(source.config):
                source = self._grow(source, init)
            if source.config != model_config:
                raise ConfigError(f"--init {init} was trained with another model config than preset {config.preset!r}")
            model.kp_detector.load_state_dict(source.kp_detector.state_dict())
            model.generator.load_state_dict(source.generator.state_dict())
        vgg = VGG19Features.from_file(config.vgg19_weights) if config.vgg19_weights else None
        if vgg is None and config.loss.l1 == 0 and config.loss.ssim == 0 and config.loss.gradient == 0:
            log.warning("no --vgg19-weights: the perceptual loss is off, using pyramid L1 + SSIM + gradients instead")
            self.config = config = config.replace(loss=dataclasses.replace(config.loss, l1=10.0, ssim=5.0, gradient=5.0))
        self.tm = TrainingModel(model.kp_detector, model.generator, config, vgg, self._neighbourhoods()).to(self.dev)
        self.tm.train()
        if vgg is not None:
            vgg.eval()

    @functools.cached_property
    def _canonical(self):
        """The data's median face mesh (computed once; None without landmarks)."""
        return canonical_mesh(self.data, self.config.image_size)

    def _can_grow(self, init_config) -> bool:
        """--init weights that differ from this run's model only by having fewer keypoints."""
        model_config = self.model_config
        return (init_config.num_kp < model_config.num_kp
                and init_config.replace(num_kp=model_config.num_kp) == model_config)

    def _grow(self, source, init):
        """--init weights with fewer keypoints: the extra ones split off their nearest old keypoint (by the
        teacher's landmarks on the data's median mesh); the first K landmarks must be the old keypoints'."""
        indices = self.config.teacher.landmark_indices
        old_k = source.config.num_kp
        canonical = self._canonical
        if canonical is None or not self.config.teacher.enabled:
            raise ConfigError(f"--init {init} has {old_k} keypoints and the run {self.model_config.num_kp}: growing "
                              "them needs the teacher's landmarks (teacher on, data prepared with landmarks)")
        parents = nearest_parents(canonical, indices[:old_k], indices[old_k:])
        log.info("--init %s: %d -> %d keypoints, the new ones start as copies of keypoints %s", init, old_k,
                 self.model_config.num_kp, parents)
        return grow_keypoints(source, self.model_config.num_kp, parents)

    def _neighbourhoods(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mesh neighbourhoods for the jacobian term, when it is on and the data has landmarks."""
        teacher = self.config.teacher
        if not (teacher.enabled and teacher.jacobian_weight):
            return None
        canonical = self._canonical
        if canonical is None:
            log.warning("no landmarks in %s: the jacobian term is off", self.data)
            return None
        size = teacher.jacobian_neighbours
        return (torch.from_numpy(neighbourhoods(canonical, teacher.landmark_indices, size)),
                torch.from_numpy(mirrored_neighbourhoods(canonical, teacher.landmark_indices, size)))

    def build_optimiser(self) -> None:
        """Adam over the model (not the fixed loss networks), the step LR schedule, the adversary if any."""
        config = self.config
        self.optimizer = torch.optim.Adam(
            [p for n, p in self.tm.named_parameters() if not n.startswith("reconstruction.")], lr=config.lr,
            betas=config.betas,
        )
        self.milestones = sorted({max(1, int(f * config.max_steps)) for f in config.lr_milestones})
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=self.milestones,
                                                              gamma=config.lr_gamma)
        self.adversary = _AdversaryState.build(config, self.dev) if config.gan.enabled else None

    def restore(self, resume: bool, init: str | Path | None) -> None:
        """--resume: weights, optimiser, schedule, adversary and best score from last.pt; --init with
        init_step: the schedules continue at that step with a fresh optimiser."""
        config, options = self.config, self.options
        if resume and self.last_path.is_file():
            state = load_training_state(self.last_path)
            self.tm.kp_detector.load_state_dict(state["kp_detector"])
            self.tm.generator.load_state_dict(state["generator"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_step, self.best = int(state["step"]), json.loads(state["best"])
            _apply_schedule(self.optimizer, self.scheduler, config, self.milestones, self.start_step)
            if self.adversary is not None:
                self.adversary.load(state, config)
            if self.best.get("image_size") != config.image_size:
                self.best = {}  # a new training resolution: scores are not comparable, pick the best afresh
            log.info("resumed from %s at step %d", self.last_path, self.start_step)
        elif resume:
            log.info("no checkpoint at %s: starting from %s", self.last_path, f"--init {init}" if init else "scratch")
        if init and options.init_step and self.start_step == 0:
            self.start_step = options.init_step
            self.scheduler.last_epoch = self.start_step
            _apply_schedule(self.optimizer, self.scheduler, config, self.milestones, self.start_step)
            log.info("--init weights continue at step %d (fresh optimizer)", self.start_step)

    def distribute(self) -> None:
        """DDP wrappers (SyncBatchNorm across GPUs); on one process the modules themselves."""
        if self.dist.world_size > 1 and self.dev.type == "cuda":
            self.tm = nn.SyncBatchNorm.convert_sync_batchnorm(self.tm)
        find_unused = self.config.teacher.enabled and self.start_step < self.config.teacher.warmup_steps
        self.net = _distributed(self.tm, self.dist, self.dev, find_unused_parameters=find_unused)
        self.adversary_net = (_distributed(self.adversary.module, self.dist, self.dev)
                              if self.adversary is not None else None)

    def open_data(self) -> None:
        """Training batches from `start_step` on (a pure function of seed, step and rank), validation pairs."""
        from torch.utils.data import DataLoader

        config, data, dev = self.config, self.data, self.dev
        dataset = PairDataset(data, "train", config.image_size, config.seed, True, config.flip_probability,
                              config.color_jitter, config.max_frame_distance,
                              cross_identity_share=config.cross_identity_share)
        if config.teacher.enabled and not dataset.has_landmarks:
            log.warning("no landmarks in %s: teacher terms are zero (run `reenact prepare-data` to cache them)", data)
        sampler = StepSampler(self.start_step, config.batch_size, self.dist.rank, self.dist.world_size)
        self.loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                                 num_workers=config.num_workers, pin_memory=dev.type == "cuda",
                                 persistent_workers=config.num_workers > 0)
        self.val_loader = None
        if self.dist.main and config.val_every and (data / "test").is_dir():
            val_set = PairDataset(data, "test", config.image_size, config.seed + 7919, False, length=config.val_pairs)
            self.val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_train_config(config, self.out / "config.yaml")

    # -- the loop --------------------------------------------------------------------------------
    def loop(self) -> dict:
        from tqdm import tqdm

        config, options = self.config, self.options
        amp = config.amp and self.dev.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext
        self.started = time.monotonic()
        self.last_save = self.started
        self.running: dict[str, float] = {}
        self.running_n = 0
        step = self.start_step
        bar = tqdm(total=config.max_steps, initial=self.start_step, desc="train", unit="it",
                   disable=None if self.dist.main else True)  # None: no bar in logs (non-TTY), one in a terminal
        batches = iter(self.loader)
        self.eval_ok = bool(options.eval_every)  # turns False if dlib evaluation is unavailable
        self.eval_cache = _reference_cache() if self.eval_ok else None
        interrupted = _StopOnSignal()
        while step < config.max_steps:
            batch = {k: v.to(self.dev, non_blocking=True) for k, v in next(batches).items()}
            losses, total, extras = self._step(batch, step)
            step += 1
            if not math.isfinite(total.item()):
                raise ConfigError(f"loss became {total.item()} at step {step}; lower the learning rate or check the data")
            self._accumulate(losses, total)
            if self.dist.main:
                bar.update(1)
                self._report(step, bar)
                self._save_samples(step, batch, extras)
                self._validate_and_select(step)
            if self._checkpoint_or_stop(step, interrupted.requested):
                break
        bar.close()
        interrupted.restore()
        return self._finish(step)

    def _step(self, batch: dict, step: int) -> tuple[dict, torch.Tensor, dict]:
        """One optimisation step of the model (and of the adversary once there is a prediction)."""
        with self.autocast():
            losses, extras = self.net(batch, step, self.dist.rank)
            fake = extras["generated"]["prediction"] if "generated" in extras else None
            if self.adversary_net is not None and fake is not None:
                ramp = self.adversary.generator_weight
                losses.update({k: v * ramp for k, v in self.adversary_net(batch["driving"], fake, "generator").items()})
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.adversary is not None and fake is not None:  # not in the teacher's warm-up (no prediction yet)
            lr = self.optimizer.param_groups[0]["lr"]
            for k, v in self.adversary.step(batch["driving"], fake, self.adversary_net, lr, self.autocast).items():
                self.running[k] = self.running.get(k, 0.0) + v
        return losses, total, extras

    def _accumulate(self, losses: dict, total: torch.Tensor) -> None:
        for k, v in losses.items():
            self.running[k] = self.running.get(k, 0.0) + float(v.detach())
        self.running["total"] = self.running.get("total", 0.0) + float(total.detach())
        self.running_n += 1

    def _report(self, step: int, bar) -> None:
        """Every log_every steps: the mean losses since the last report to metrics.csv and the bar."""
        config = self.config
        if not (step % config.log_every == 0 or step == config.max_steps):
            return
        means = {k: v / self.running_n for k, v in self.running.items()}
        means["lr"] = self.optimizer.param_groups[0]["lr"]
        means["s_per_it"] = (time.monotonic() - self.started) / max(1, step - self.start_step)
        bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if k in ("total", "teacher_motion", "l1")})
        _append_metrics(self.metrics_path, step, time.monotonic() - self.started, "train", means)
        self.running, self.running_n = {}, 0

    def _save_samples(self, step: int, batch: dict, extras: dict) -> None:
        config = self.config
        if config.sample_every and (step % config.sample_every == 0 or step == 1) and "generated" in extras:
            from training.grid import make_grid, save_grid

            grid = make_grid(batch, extras["kp_source"], extras["kp_driving"], extras["generated"])
            save_grid(self.out / "samples" / f"step{step:07d}.png", grid)

    def _validate_and_select(self, step: int) -> None:
        """Validation loss (and dlib evaluation when due); a better score exports best.safetensors."""
        config, options = self.config, self.options
        warm = config.teacher.enabled and step <= config.teacher.warmup_steps
        if self.val_loader is None or warm or not (step % config.val_every == 0 or step == config.max_steps):
            return
        values = validation_loss(self.tm, self.val_loader, self.dev)
        if self.eval_ok and (step % options.eval_every == 0 or step == config.max_steps):
            evaluated = dlib_evaluation(self.tm, self.model_config, self.data, options, config.image_size,
                                        self.eval_cache)
            self.eval_ok = evaluated is not None
            values.update(evaluated or {})
        _append_metrics(self.metrics_path, step, time.monotonic() - self.started, "val", values)
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        # Best by dlib AKD when evaluation runs (val-loss-only rounds then don't compete), else by val L1.
        key = "eval_akd" if self.eval_ok else "val_l1"
        score = values.get(key, float("nan"))
        best = self.best
        if math.isfinite(score) and (best.get("key") != key or score < best.get("score", float("inf"))):
            self.best = {"key": key, "score": score, "step": step, "image_size": config.image_size, **values}
            meta = {"step": str(step), "selected_by": key, "score": f"{score:.6g}", "preset": config.preset,
                    "train_image_size": str(config.image_size), "teacher": str(config.teacher.enabled)}
            path = export_model(self.tm, self.model_config, self.out / "best.safetensors", meta)
            (self.out / "best.json").write_text(json.dumps(self.best, indent=1))
            if options.publish:
                Path(options.publish).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, options.publish)
                log.info("published %s -> %s", path, options.publish)

    def _checkpoint_or_stop(self, step: int, interrupted: bool) -> bool:
        """Saves last.pt when due or stopping; True to stop (time, step limit, signal). Rank 0 decides."""
        config, options = self.config, self.options
        now = time.monotonic()
        due = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
        due = due or (config.checkpoint_every_s and now - self.last_save >= config.checkpoint_every_s)
        stop = bool(options.stop_after_s and now - self.started >= options.stop_after_s)
        stop = stop or bool(options.stop_at_step and step >= options.stop_at_step) or interrupted
        if self.dist.world_size > 1:  # every rank must agree on saving/stopping: rank 0 decides
            import torch.distributed as dist

            flags = torch.tensor([int(bool(due)), int(stop)], device=self.dev)
            dist.broadcast(flags, src=0)
            due, stop = bool(flags[0]), bool(flags[1])
        if due or stop:
            self._checkpoint(step)
            self.last_save = now
        return stop

    def _checkpoint(self, step_done: int) -> None:
        if self.dist.main:
            save_training_state(self.last_path, _state(self.tm, self.optimizer, self.scheduler, step_done, self.best,
                                                       self.config, self.adversary))

    def _finish(self, step: int) -> dict:
        """Final checkpoint, final.safetensors and summary.json; the summary carries the weights (tests)."""
        config, tm = self.config, self.tm
        sync_buffers(tm, self.dist)
        self._checkpoint(step)
        summary = {"steps": step, "seconds": round(time.monotonic() - self.started, 1), "run": str(self.out),
                   "best": self.best}
        if self.dist.main:
            export_model(tm, self.model_config, self.out / "final.safetensors",
                         {"step": str(step), "preset": config.preset, "teacher": str(config.teacher.enabled)})
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        summary["state"] = {k: v.detach().cpu().clone() for k, v in tm.state_dict().items()}
        if self.adversary is not None:
            summary["state"].update({f"discriminator.{k}": v.detach().cpu().clone()
                                     for k, v in self.adversary.module.state_dict().items()})
        return summary
