"""`reenact train`: train FOMM / the paper variant (one process, or many with torchrun)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on prepared data (CPU, GPU, or multi-GPU/multi-node via torchrun)",
        description="Losses as in FOMM (pyramid reconstruction + equivariance) plus, by default, the mediapipe-landmark "
        "teacher (keypoint warm start and motion supervision; --no-teacher for paper-faithful training). "
        "Writes checkpoints (resumable), sample grids, metrics.csv and best/final .safetensors to --out. "
        "Multi-process: `torchrun --nproc-per-node N -m reenact_app.cli train ...`.",
    )
    p.add_argument("--config", default="paper-rt",
                   help="training YAML, or the name of one in configs/train/ (default paper-rt)")
    p.add_argument("--data", required=True, type=Path, help="prepared data folder (train/ test/ [landmarks/])")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, samples, metrics.csv)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt if it exists")
    p.add_argument("--init", type=Path, help="start from these model weights (.safetensors), fresh optimizer")
    p.add_argument("--init-step", type=int, default=0,
                   help="with --init: continue the schedule (LR, teacher) from this step instead of 0, e.g. the "
                   "weights' own step when their run's last.pt is gone")
    p.add_argument("--no-teacher", action="store_true", help="disable the landmark teacher (paper-faithful)")
    p.add_argument("--gan", action="store_true",
                   help="add FOMM vox-adv's patch discriminator: LSGAN + feature matching (config key gan:)")
    p.add_argument("--vgg19-weights", type=Path, help="torchvision-format VGG19 state dict for the perceptual loss")
    p.add_argument("--face-perceptual", action="store_true",
                   help="add the face-mesh perceptual loss (mediapipe's bundled face-mesh CNN; config key "
                   "loss.face_perceptual)")
    p.add_argument("--image-size", type=int, help="training resolution (overrides the config)")
    p.add_argument("--batch-size", type=int, help="per-process batch size")
    p.add_argument("--max-steps", type=int, help="total optimisation steps (sets the LR schedule)")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--workers", type=int, help="data-loader worker processes")
    p.add_argument("--checkpoint-every", type=float, help="seconds between checkpoints")
    p.add_argument("--sample-every", type=int, help="steps between sample grids")
    p.add_argument("--val-every", type=int, help="steps between validations")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--publish", type=Path,
                   help="copy best.safetensors here whenever it improves (e.g. assets/weights/default.safetensors)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between dlib evaluations (FOMM protocol on test/); best checkpoint by AKD")
    p.add_argument("--eval-clips", type=int, default=0, help="clips per dlib evaluation (0: all)")
    p.add_argument("--eval-frames", type=int, default=32, help="frames per clip per dlib evaluation")
    p.add_argument("--eval-spread", action="store_true",
                   help="evaluate --eval-frames frames evenly spaced over each clip (not the first ones)")
    p.add_argument("--eval-data", help="folder with test/ for the dlib evaluation (default: --data)")
    p.add_argument("--stop-after", type=float, default=0.0, help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--stop-at-step", type=int, default=0, help="stop (with a checkpoint) at this step")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.trainer import TrainOptions, train

    config = load_train_config(args.config)
    changes = {
        "image_size": args.image_size, "batch_size": args.batch_size, "max_steps": args.max_steps, "lr": args.lr,
        "seed": args.seed, "threads": args.threads, "num_workers": args.workers,
        "checkpoint_every_s": args.checkpoint_every, "sample_every": args.sample_every, "val_every": args.val_every,
        "vgg19_weights": str(args.vgg19_weights) if args.vgg19_weights else None,
    }
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    if args.no_teacher:
        config = config.replace(teacher=dataclasses.replace(config.teacher, enabled=False))
    if args.gan:
        config = config.replace(gan=dataclasses.replace(config.gan, enabled=True))
    if args.face_perceptual:
        from training.config import FACE_PERCEPTUAL_ON

        config = config.replace(loss=dataclasses.replace(config.loss, face_perceptual=FACE_PERCEPTUAL_ON))
    if args.no_amp:
        config = config.replace(amp=False)
    options = TrainOptions(
        publish=str(args.publish or ""), eval_every=args.eval_every, eval_clips=args.eval_clips,
        eval_frames=args.eval_frames, eval_spread=args.eval_spread, eval_data=str(args.eval_data or ""),
        stop_after_s=args.stop_after * 60, stop_at_step=args.stop_at_step, init_step=args.init_step,
    )
    result = train(config, args.data, args.out, resume=args.resume, init=args.init, device=args.device, options=options)
    result.pop("state", None)
    print(json.dumps(result, indent=1))
    return 0
