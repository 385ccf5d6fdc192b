"""OGL object prior (baselines spec §2.4, §3.2): a frozen ImageNet ResNet-18 on the evaluation image.

O(p) = mean_c |F_c(p)| over the 512 channels of layer4's output F (post-ReLU, 7×7 at 224 px); upsampled like A.
Weights come from a local file (`resnet18-f37072fd.pth` by name in `$AVSL_BENCH_WEIGHTS`, or a path); without it
the prior runs from random init with a loud warning, and `info.status` says so.
"""

from __future__ import annotations

import torch
from torch import nn

from .encoders import IMAGENET_R18_FILE, WeightsInfo, resnet18_visual

__all__ = ["OGLPrior"]


class OGLPrior(nn.Module):
    """Frozen ImageNet ResNet-18 trunk in eval mode; `forward(image) -> (B, h, w)` object-prior map."""

    def __init__(self, weights: str | None = IMAGENET_R18_FILE) -> None:
        super().__init__()
        self.trunk, info = resnet18_visual(weights or None)
        self.info: WeightsInfo = info
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "OGLPrior":  # always frozen, BN in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.trunk(image).abs().mean(dim=1).float()
