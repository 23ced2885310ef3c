"""Optional adversarial training (FOMM's vox-adv recipe): patch discriminator, LSGAN and feature matching.

Why: pixel losses alone average over plausible details (blur); a discriminator that scores local patches
and a feature-matching term (L1 between the discriminator's activations on the real and the generated
frame) push the generator towards sharp texture. FOMM's vox-adv config: one scale, 4 down blocks of 4x4
convolutions (instance norm after the first, LeakyReLU 0.2, 2x2 average pooling but after the last),
spectral norm, a 1x1 convolution to the patch scores; generator weight 1 for the LSGAN term and 10 per
layer for feature matching. Training-only: nothing here is part of the model at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import GanConfig


class DownBlock(nn.Module):
    """4x4 conv -> [instance norm] -> LeakyReLU(0.2) -> [2x2 average pool]."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool, pool: bool, spectral: bool):
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=4)
        self.conv = nn.utils.parametrizations.spectral_norm(conv) if spectral else conv
        self.norm = nn.InstanceNorm2d(out_channels, affine=True) if norm else nn.Identity()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm(self.conv(x)), 0.2)
        return F.avg_pool2d(x, 2) if self.pool else x


class PatchDiscriminator(nn.Module):
    """Returns the activations of every block (for feature matching) and the map of patch scores."""

    def __init__(self, config: GanConfig, channels: int = 3):
        super().__init__()
        blocks = []
        for i in range(config.num_blocks):
            in_ch = channels if i == 0 else min(config.max_features, config.block_expansion * 2 ** i)
            out_ch = min(config.max_features, config.block_expansion * 2 ** (i + 1))
            blocks.append(DownBlock(in_ch, out_ch, norm=i != 0, pool=i != config.num_blocks - 1,
                                    spectral=config.spectral_norm))
        self.blocks = nn.ModuleList(blocks)
        head = nn.Conv2d(out_ch, 1, kernel_size=1)
        self.head = nn.utils.parametrizations.spectral_norm(head) if config.spectral_norm else head

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features, self.head(x)


class Adversary(nn.Module):
    """One discriminator per image scale, and both sides of the game in one module (so DDP wraps it once).

    mode "generator": LSGAN term (1 - D(fake))^2 and feature matching, gradients flow into `fake`;
    mode "discriminator": (1 - D(real))^2 + D(fake)^2 with `fake` detached.
    """

    def __init__(self, config: GanConfig):
        super().__init__()
        self.config = config
        self.discriminators = nn.ModuleDict({_key(s): PatchDiscriminator(config) for s in config.scales})

    def forward(self, real: torch.Tensor, fake: torch.Tensor, mode: str) -> dict[str, torch.Tensor]:
        if mode == "generator":
            return self._generator_losses(real, fake)
        if mode == "discriminator":
            return self._discriminator_loss(real, fake.detach())
        raise ValueError(f"mode must be 'generator' or 'discriminator', got {mode!r}")

    def _both(self, scale: float, real: torch.Tensor, fake: torch.Tensor):
        """Real and fake through one forward: spectral norm's power iteration updates the weights at every
        training-mode call, so two calls would compare activations of two slightly different networks."""
        n = real.shape[0]
        features, scores = self.discriminators[_key(scale)](_resize(torch.cat([real, fake]), scale))
        return [f[:n] for f in features], scores[:n], [f[n:] for f in features], scores[n:]

    def _generator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        adversarial = fake.new_zeros(())
        matching = fake.new_zeros(())
        for scale in cfg.scales:
            real_features, _, fake_features, fake_scores = self._both(scale, real, fake)
            adversarial = adversarial + ((1 - fake_scores) ** 2).mean()
            for weight, f_fake, f_real in zip(cfg.feature_matching, fake_features, real_features):
                if weight:
                    matching = matching + weight * (f_fake - f_real.detach()).abs().mean()
        losses = {"generator_gan": cfg.adversarial_weight * adversarial}
        if any(cfg.feature_matching):
            losses["feature_matching"] = matching
        return losses

    def _discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        total = real.new_zeros(())
        for scale in self.config.scales:
            _, real_scores, _, fake_scores = self._both(scale, real, fake)
            total = total + ((1 - real_scores) ** 2).mean() + (fake_scores ** 2).mean()
        return {"discriminator": self.config.adversarial_weight * total}


def _key(scale: float) -> str:
    return f"scale_{scale:g}".replace(".", "_")


def _resize(image: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1:
        return image
    return F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)
