"""Feature grids before global pooling, for methods that work on per-position tokens (JSA, DMC).

`audio_feature_map` returns the audio trunk's output before its global max pool as a 4-D (B, C, F, T) grid:
the audio ResNet-18 gives its frequency × time grid; the CPU-preset `Conv1dAudio` (frequency bins are its input
channels) gives F = 1 and its time positions. Visual trunks already return (B, C, h, w).
"""

from __future__ import annotations

import torch
from torch import nn

from .encoders import Conv1dAudio, _AudioResNet

__all__ = ["audio_feature_map", "grid_tokens"]


def audio_feature_map(trunk: nn.Module, audio: torch.Tensor) -> torch.Tensor:
    """(B, C, F, T) features of an audio trunk from `build_audio`, before its global max pool."""
    if isinstance(trunk, Conv1dAudio):
        x = audio.squeeze(1) if audio.dim() == 4 else audio
        return trunk.body(x).unsqueeze(2)
    if isinstance(trunk, _AudioResNet):
        x = audio if audio.dim() == 4 else audio.unsqueeze(1)
        return trunk.trunk(x)
    raise TypeError(f"no pre-pool feature map for audio trunk {type(trunk).__name__}")


def grid_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *grid) → (B, N, C) tokens in row-major grid order."""
    return x.flatten(2).transpose(1, 2)
