"""Package helpers the studies in experiments/ share: the warp-alone output and the run-metrics reader."""

from __future__ import annotations

import torch

from models import load_checkpoint
from reenact_common.video_io import centre_crop, read_frames
from training.run_metrics import metric_rows, train_seconds
from training.warp_only import with_warp_only

CLIP = "wyhsirius+LIA/data/vox/driving2.mp4"  # a shared talking-head clip with visible head motion


def _frames(clips_dir, n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    frames = [centre_crop(f, 256) for f in read_frames(clips_dir / CLIP, n)]
    as_tensor = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    return as_tensor(frames[0]), as_tensor(frames[-1])


def test_warp_only_shows_the_warped_avatar_not_the_decoder(clips_dir):
    """Unmoved, the warp alone is the avatar exactly; moved, it follows the driver and differs from the
    decoder's prediction (the evaluations' 'warp alone' row measures the motion, not the output stage)."""
    source, driving = _frames(clips_dir)
    model = load_checkpoint().set_warped_source_blend(False)
    warp = with_warp_only(model)
    assert warp.kp_detector is model.kp_detector and warp.generator is not model.generator
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        rest = warp.generator(source, kp_driving=kp_s, kp_source=kp_s)["prediction"]
        moved = warp.generator(source, kp_driving=kp_d, kp_source=kp_s)["prediction"]
        decoded = model.generator(source, kp_driving=kp_d, kp_source=kp_s)["prediction"]
    assert float((rest - source).abs().max()) < 2e-3
    assert float((moved - driving).abs().mean()) < 0.7 * float((source - driving).abs().mean())
    assert float((moved - decoded).abs().mean()) > 5e-3


def test_metric_rows_make_wall_time_cumulative_over_resumes(tmp_path):
    """The trainer restarts elapsed_s at every invocation; a run resumed once must add both clocks."""
    (tmp_path / "metrics.csv").write_text(
        "step,elapsed_s,split,name,value\n"
        "100,50.0,train,loss,1.0\n200,120.0,train,loss,0.9\n"  # first invocation: 120 s
        "300,30.0,train,loss,0.8\n400,80.5,val,eval_akd,3.1\n")  # resumed: a new clock
    rows = list(metric_rows(tmp_path / "metrics.csv"))
    assert [r["wall_s"] for r in rows] == [50.0, 120.0, 150.0, 200.5]
    assert rows[-1]["name"] == "eval_akd" and rows[-1]["split"] == "val"
    assert train_seconds(tmp_path) == 200.5
    assert train_seconds(tmp_path / "missing") == 0.0
