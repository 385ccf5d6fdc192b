"""Shared encoders and heads (baselines spec §2.2, §3.8) and the local ImageNet weight file.

* `resnet18_visual`: torchvision ResNet-18, avgpool + fc removed → (B, 512, H/32, W/32); ImageNet weights from a
  local file (hubs are unreachable), else random init (the caller records which).
* `resnet18_audio`: ResNet-18 from scratch, conv1 1→64 7×7/2, global max pool → (B, 512).
* `SmallCNN` (CPU preset): 3×3 conv + BN + ReLU blocks (strides 2,2,1,2,1; widths 16/32/32/64/64) → (B, C, H/8, W/8).
* `Conv1dAudio` (CPU preset): Conv1d k5 s2 + BN + ReLU blocks over time (frequency bins as channels), max over time.

Init of everything trained from scratch (§2.2): conv Kaiming-normal fan_out (ReLU), linear truncated normal
std 0.01, BN γ ~ N(1, 0.02), β = 0; biases keep PyTorch defaults.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import ChecksumError
from ..files import sha256_file

__all__ = [
    "IMAGENET_R18_FILE", "WeightsInfo", "resolve_weights", "load_imagenet_resnet18", "resnet18_visual",
    "resnet18_audio", "SmallCNN", "Conv1dAudio", "init_scratch", "build_visual", "build_audio", "build_trunks",
]

#: torchvision's IMAGENET1K_V1 ResNet-18 file; the name carries the first 8 hex digits of its sha256.
IMAGENET_R18_FILE = "resnet18-f37072fd.pth"
WEIGHTS_ENV = "AVSL_BENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of pre-trained weights: what was asked for, what was loaded."""

    requested: str | None
    path: str | None
    sha256: str | None
    status: str  # "loaded" | "missing_random_init" | "not_requested"

    def to_json(self) -> dict:
        return {"requested": self.requested, "path": self.path, "sha256": self.sha256, "status": self.status}


def resolve_weights(name: str | None) -> Path | None:
    """A weight file by absolute/relative path, else by name in `$AVSL_BENCH_WEIGHTS`; None if not found."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_file():
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env and (Path(env) / path.name).is_file():
        return Path(env) / path.name
    return None


def _torchvision_prefix(path: Path) -> str | None:
    """The hash prefix of a torchvision-style file name `<arch>-<8 hex>.pth`, if any."""
    stem = path.name.split(".")[0]
    tail = stem.rsplit("-", 1)[-1]
    return tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


def load_imagenet_resnet18(model: nn.Module, name: str | None, *, what: str = "visual") -> WeightsInfo:
    """Load ImageNet ResNet-18 weights into `model` (a torchvision resnet18) from a local file.

    A missing file leaves the random init and warns loudly (the run records status `missing_random_init`); a file
    whose sha256 does not start with the prefix in its torchvision name is a ChecksumError.
    """
    if not name:
        return WeightsInfo(None, None, None, "not_requested")
    path = resolve_weights(name)
    if path is None:
        warnings.warn(
            f"ImageNet weights {name!r} not found (give a path or put the file in ${WEIGHTS_ENV}); the {what} "
            "ResNet-18 starts from RANDOM INIT — results are not comparable with published numbers",
            RuntimeWarning, stacklevel=2,
        )
        return WeightsInfo(name, None, None, "missing_random_init")
    digest = sha256_file(path)
    prefix = _torchvision_prefix(path)
    if prefix is not None and not digest.startswith(prefix):
        raise ChecksumError(f"{path}: sha256 {digest[:16]}… does not match the prefix {prefix} in its name")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [k for k in missing if not k.startswith("fc.")] or unexpected:
        raise ChecksumError(f"{path}: not a ResNet-18 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return WeightsInfo(name, str(path), digest, "loaded")


def init_scratch(module: nn.Module) -> None:
    """§2.2 init for networks and heads trained from scratch."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, mean=1.0, std=0.02)
            nn.init.constant_(m.bias, 0.0)


class _Trunk(nn.Module):
    """A torchvision ResNet without avgpool and fc: image → (B, 512, h, w)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18_visual(weights: str | None = None) -> tuple[nn.Module, WeightsInfo]:
    """ResNet-18 visual trunk (512 channels, stride 32) and the provenance of its weights."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    info = load_imagenet_resnet18(net, weights)
    return _Trunk(net), info


class _AudioResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.trunk = _Trunk(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.trunk(x), dim=(2, 3))


def resnet18_audio() -> nn.Module:
    """ResNet-18 on (B, 1, F, T) log spectrograms, global max pool → (B, 512); §2.2 init."""
    net = _AudioResNet()
    init_scratch(net)
    return net


class SmallCNN(nn.Module):
    """CPU-preset visual trunk: 3×3 conv + BN + ReLU per stage → (B, widths[-1], H/Πstrides, W/Πstrides), then
    optionally a `pool`×`pool` average pool of the grid."""

    def __init__(self, widths: Sequence[int] = (16, 32, 32, 64, 64), strides: Sequence[int] = (2, 2, 1, 2, 1),
                 pool: int = 1) -> None:
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError("widths and strides must have the same length")
        layers, c_in = [], 3
        for c, s in zip(widths, strides):
            layers += [nn.Conv2d(c_in, c, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        if pool > 1:  # average-pool the feature grid (a coarser, smoother map, like ResNet's 7×7 at 224 px)
            layers.append(nn.AvgPool2d(pool, stride=pool))
        self.body = nn.Sequential(*layers)
        self.out_channels = c_in
        init_scratch(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Conv1dAudio(nn.Module):
    """CPU-preset audio trunk on (B, F, T) log spectrograms: Conv1d k5 s2 + BN + ReLU stages, max over time."""

    def __init__(self, in_bins: int = 64, widths: Sequence[int] = (128, 128, 128)) -> None:
        super().__init__()
        layers, c_in = [], in_bins
        for c in widths:
            layers += [nn.Conv1d(c_in, c, 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out_channels = c_in
        init_scratch(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # (B, 1, F, T) → (B, F, T)
            x = x.squeeze(1)
        return torch.amax(self.body(x), dim=-1)


def build_visual(kind: str, *, widths: Sequence[int] = (), strides: Sequence[int] = (), weights: str | None = None,
                 pool: int = 1):
    """(trunk, out_channels, WeightsInfo) for `kind` ∈ {resnet18, small_cnn}."""
    if kind == "resnet18":
        if pool != 1:
            raise ValueError("visual_pool applies to small_cnn only")
        trunk, info = resnet18_visual(weights)
        return trunk, 512, info
    if kind == "small_cnn":
        trunk = SmallCNN(widths or (16, 32, 32, 64, 64), strides or (2, 2, 1, 2, 1), pool)
        return trunk, trunk.out_channels, WeightsInfo(None, None, None, "not_requested")
    raise ValueError(f"unknown visual encoder {kind!r}; known: resnet18, small_cnn")


def build_audio(kind: str, *, in_bins: int = 64, widths: Sequence[int] = ()):
    """(trunk, out_channels) for `kind` ∈ {resnet18, conv1d}."""
    if kind == "resnet18":
        return resnet18_audio(), 512
    if kind == "conv1d":
        trunk = Conv1dAudio(in_bins, widths or (128, 128, 128))
        return trunk, trunk.out_channels
    raise ValueError(f"unknown audio encoder {kind!r}; known: resnet18, conv1d")


def build_trunks(cfg, *, audio_in_bins: int = 64):
    """(visual trunk, its channels, WeightsInfo, audio trunk, its channels) from an `EncoderConfig`'s knobs."""
    visual, v_ch, info = build_visual(cfg.visual, widths=cfg.visual_widths, strides=cfg.visual_strides,
                                      weights=cfg.visual_weights, pool=cfg.visual_pool)
    audio, a_ch = build_audio(cfg.audio, in_bins=audio_in_bins, widths=cfg.audio_widths)
    return visual, v_ch, info, audio, a_ch
