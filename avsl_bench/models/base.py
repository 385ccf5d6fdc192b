"""The model contract shared by every learned method, and the method registry entry.

A method model is an `nn.Module` with three entry points:

* `forward(image, audio) -> dict[str, Tensor]`: per-sample embeddings of a local batch (training mode, with
  the method's dropout / momentum update). The loop all-gathers them (with gradient) across GPUs;
* `loss(emb) -> (loss, stats)`: the method's loss over the *global* batch of gathered embeddings;
* `localize(image, audio) -> (B, h, w)`: the method's grid score map A (eval mode; cosine maps are logits
  cos/τ, so the fixed-range form is Â = (τ·A + 1) / 2, `map_range = "cosine"`; maps already in [0, 1], such as
  JSA's per-image normalised mix, set `map_range = "unit"` and are written as they are).

Optional: `sample_scores(image, audio)` (explicit confidences) and `embeddings(image, audio) -> (image_emb,
audio_emb) | None` (global embeddings for cross-modal retrieval; `predict` writes them into the archive).

Models never read files and never score; the loop and `predict` do that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["AVModel", "MethodEntry", "EncoderConfig", "cross_entropy_rows", "cross_entropy_cols", "diagonal_accuracy"]


@dataclass(frozen=True)
class EncoderConfig:
    """Shared encoder/head knobs (§2.2 defaults; the CPU preset of §3.8 changes them in its recipe)."""

    visual: str = "resnet18"  # resnet18 | small_cnn
    visual_weights: str = "resnet18-f37072fd.pth"  # ImageNet file for resnet18 ("" = random init on purpose)
    visual_widths: tuple[int, ...] = ()
    visual_strides: tuple[int, ...] = ()
    visual_pool: int = 1  # small_cnn: average-pool the feature grid by this factor
    audio: str = "resnet18"  # resnet18 | conv1d
    audio_widths: tuple[int, ...] = ()
    dim: int = 512
    tau: float = 0.03


class AVModel(nn.Module):
    """Base class: holds τ and the weights provenance; subclasses implement forward / loss / localize."""

    map_range = "cosine"

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = float(tau)
        self.weights_info: dict[str, Any] = {}

    def loss(self, emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def localize(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample_scores(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor | None:
        """Explicit per-sample confidences, if the method defines them (default: none; the scorer then uses the
        top-quarter mean of the map)."""
        return None

    def embeddings(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Global (image_emb, audio_emb), each (B, D), for cross-modal retrieval (eval mode), if the method defines
        them (default: none; `predict` then writes no embeddings)."""
        return None


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its config dataclass (the recipe's `[model]` table) and its constructor."""

    name: str
    config_cls: type
    build: Callable[[Any], AVModel]
    description: str = ""


def cross_entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """CE_row(Z) = mean_i −log softmax_j(Z_ij)[j = i] (float32)."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return nn.functional.cross_entropy(logits.float(), target)


def cross_entropy_cols(logits: torch.Tensor) -> torch.Tensor:
    """CE_col(Z) = CE_row(Zᵀ)."""
    return cross_entropy_rows(logits.t())


def diagonal_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose largest logit is on the diagonal (the matching pair), for training logs."""
    return (logits.argmax(dim=1) == torch.arange(len(logits), device=logits.device)).float().mean()
