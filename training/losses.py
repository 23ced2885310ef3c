"""FOMM's losses: pyramid reconstruction (VGG19 perceptual, or L1 + SSIM + gradients without it) and
keypoint/jacobian equivariance under random thin-plate-spline warps."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import AntiAliasInterpolation2d, inverse_2x2, make_coordinate_grid
from reenact_common.errors import CheckpointError


class ImagePyramid(nn.Module):
    """The image at each scale (anti-aliased), keyed like FOMM: 'prediction_1', 'prediction_0.5', ..."""

    def __init__(self, scales: tuple[float, ...], channels: int = 3):
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleDict(
            {str(s).replace(".", "-"): AntiAliasInterpolation2d(channels, s) for s in self.scales if s != 1}
        )

    def forward(self, x: torch.Tensor) -> dict[float, torch.Tensor]:
        return {s: x if s == 1 else self.downs[str(s).replace(".", "-")](x) for s in self.scales}


# ------------------------------------------------------------------------------------------- VGG19
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
_VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1


class VGG19Features(nn.Module):
    """VGG19 `features` with torchvision's layer indices, so its ImageNet state dict loads as is (frozen)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> "VGG19Features":
        """Load a torchvision `vgg19` state dict (features.N.* keys; classifier.* ignored), weights_only."""
        model = cls()
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"VGG19 weights not found: {path}") from None
        except Exception as exc:
            raise CheckpointError(f"can't read VGG19 weights {path}: {exc}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            model.features.load_state_dict(features, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} is not a torchvision VGG19 state dict (expected features.0.weight ... features.34.bias): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return model.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        out = []
        for start, end in _VGG19_SLICES:
            x = self.features[start:end](x)
            out.append(x)
        return out


# ------------------------------------------------------------------------------------------- pixel
def gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised 2-D Gaussian, one depthwise (C, 1, size, size) kernel per channel of `like`."""
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(like.shape[1], 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images in [0, 1] (Gaussian window, reflect padding so small pyramid levels work)."""
    window = min(window, x.shape[-1], x.shape[-2])
    window -= 1 - window % 2
    w = gaussian_window(window, sigma, x)
    pad = window // 2
    c = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect") if pad else t, w, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean()


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between image gradients: penalises blur that plain L1 tolerates."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(x) - dx(y)).abs().mean() + (dy(x) - dy(y)).abs().mean()


def weighted_feature_l1(weights, predicted: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Perceptual distance: sum over layers of weight x mean |feature difference| (zero-weight layers skipped)."""
    return sum((w * (a - b).abs().mean() for w, a, b in zip(weights, predicted, real) if w),
               predicted[0].new_zeros(()))


class ReconstructionLoss(nn.Module):
    """Sum over pyramid scales of perceptual (if VGG19 given) and/or L1 + (1 - SSIM) + gradient terms."""

    def __init__(self, scales: tuple[float, ...], weights, vgg: VGG19Features | None = None, face=None):
        super().__init__()
        self.pyramid = ImagePyramid(scales)
        self.vgg = vgg
        self.face = face  # training.face_features.FaceMeshFeatures when weights.face_perceptual is set
        self.weights = weights

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(prediction.device.type, enabled=False):  # SSIM's variances cancel to NaN in bf16
            return self._losses(prediction.float(), target.float())

    def _losses(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        pred, real = self.pyramid(prediction), self.pyramid(target)
        w = self.weights
        losses: dict[str, torch.Tensor] = {}
        zero = prediction.new_zeros(())
        if self.vgg is not None:
            losses["perceptual"] = sum((weighted_feature_l1(w.perceptual, self.vgg(pred[s]), self.vgg(real[s].detach()))
                                        for s in pred), zero)
        if self.face is not None and any(w.face_perceptual):
            full = max(pred)  # the face-mesh network resizes to 192 px itself: the finest scale only
            with torch.no_grad():
                fr = self.face(real[full])
            losses["face_perceptual"] = weighted_feature_l1(w.face_perceptual, self.face(pred[full]), fr)
        if w.l1:
            losses["l1"] = sum((w.l1 * (pred[s] - real[s]).abs().mean() for s in pred), zero)
        if w.ssim:
            losses["ssim"] = sum((w.ssim * (1 - ssim(pred[s], real[s])) for s in pred), zero)
        if w.gradient:
            losses["gradient"] = sum((w.gradient * gradient_l1(pred[s], real[s]) for s in pred), zero)
        return losses


# ------------------------------------------------------------------------------------------- equivariance
class RandomTPS:
    """Random affine + thin-plate-spline warp T of [-1, 1] coordinates, with its analytic jacobian.

    T(p) = A p + t + sum_k w_k U(|p - c_k|), U(r) = r^2 log r^2, c_k on a regular grid.
    """

    def __init__(self, batch: int, sigma_affine: float, sigma_tps: float, points: int, like: torch.Tensor,
                 generator: torch.Generator | None = None):
        kw = {"device": like.device, "dtype": like.dtype}
        noise = torch.randn(batch, 2, 3, generator=generator, device=generator.device if generator else like.device)
        self.theta = (noise.to(**kw) * sigma_affine) + torch.eye(2, 3, **kw)
        self.control = make_coordinate_grid(points, points, like).view(-1, 2)
        weights = torch.randn(batch, points * points, 2, generator=generator, device=generator.device if generator else like.device)
        self.weights = weights.to(**kw) * sigma_tps

    def warp(self, coords: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) -> (B, N, 2)."""
        a, t = self.theta[:, :, :2], self.theta[:, :, 2]
        out = torch.einsum("bij,bnj->bni", a, coords) + t[:, None]
        diff = coords[:, :, None, :] - self.control[None, None]  # (B, N, P, 2)
        r2 = (diff**2).sum(-1)
        u = r2 * torch.log(r2 + 1e-9)
        return out + torch.einsum("bnp,bpi->bni", u, self.weights)

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """dT/dp at coords: (B, N, 2, 2)."""
        diff = coords[:, :, None, :] - self.control[None, None]
        r2 = (diff**2).sum(-1, keepdim=True)
        grad_u = 2 * diff * (torch.log(r2 + 1e-9) + 1)  # (B, N, P, 2)
        tps = torch.einsum("bpi,bnpj->bnij", self.weights, grad_u)
        return self.theta[:, None, :, :2] + tps

    def warp_image(self, image: torch.Tensor) -> torch.Tensor:
        """image'(p) = image(T(p)) (reflection padding, align_corners=True like the model's grids)."""
        b, _, h, w = image.shape
        grid = make_coordinate_grid(h, w, image).view(1, -1, 2).expand(b, -1, -1)
        grid = self.warp(grid).view(b, h, w, 2)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def equivariance_losses(kp_driving: dict, kp_transformed: dict, tps: RandomTPS, weight_value: float,
                        weight_jacobian: float) -> dict[str, torch.Tensor]:
    """Keypoints of the warped frame, mapped back by T, must equal the frame's keypoints (and jacobians).

    Computed in fp32 even under autocast: the 2x2 inverses and products lose the signal in bf16."""
    device = kp_driving["value"].device.type
    with torch.autocast(device, enabled=False):
        kp_driving = {k: v.float() for k, v in kp_driving.items()}
        kp_transformed = {k: v.float() for k, v in kp_transformed.items()}
        return _equivariance_terms(kp_driving, kp_transformed, tps, weight_value, weight_jacobian)


def _equivariance_terms(kp_driving: dict, kp_transformed: dict, tps: RandomTPS, weight_value: float,
                        weight_jacobian: float) -> dict[str, torch.Tensor]:
    losses = {}
    if weight_value:
        mapped = tps.warp(kp_transformed["value"])
        losses["equivariance_value"] = weight_value * (kp_driving["value"] - mapped).abs().mean()
    if weight_jacobian and "jacobian" in kp_driving:
        jac = torch.matmul(tps.jacobian(kp_transformed["value"]), kp_transformed["jacobian"])
        value = torch.matmul(inverse_2x2(kp_driving["jacobian"]), jac)
        eye = torch.eye(2, dtype=value.dtype, device=value.device)
        losses["equivariance_jacobian"] = weight_jacobian * (eye - value).abs().mean()
    return losses
