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
`localize_and_embed(image, audio)` gives both (what `predict` calls); methods whose map and embeddings come from
the same encoder outputs (EZ-VSL, JSA) implement it instead of `localize`, so that the encoders run once.

Models never read files and never score; the loop and `predict` do that.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["AVModel", "MethodEntry", "EncoderConfig", "cross_entropy_rows", "cross_entropy_cols", "diagonal_accuracy",
           "teacher_copy", "ema_update"]


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # `localize` and `localize_and_embed` default to each other: a method must define one of them.
        if cls.localize is AVModel.localize and cls.localize_and_embed is AVModel.localize_and_embed:
            raise TypeError(f"{cls.__name__} must define localize or localize_and_embed")

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = float(tau)
        self.weights_info: dict[str, Any] = {}

    def loss(self, emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def localize(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The grid map A (eval mode). A method implements this or, when its map and embeddings share one pass,
        `localize_and_embed`."""
        return self.localize_and_embed(image, audio, embed=False)[0]

    def sample_scores(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor | None:
        """Explicit per-sample confidences, if the method defines them (default: none; the scorer then uses the
        top-quarter mean of the map)."""
        return None

    def embeddings(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Global (image_emb, audio_emb), each (B, D), for cross-modal retrieval (eval mode), if the method defines
        them (default: none; `predict` then writes no embeddings)."""
        return None

    def localize_and_embed(self, image: torch.Tensor, audio: torch.Tensor, *, embed: bool = True
                           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """(`localize`, `embeddings` or None when not `embed`) of one batch (eval mode); the default calls both."""
        return self.localize(image, audio), (self.embeddings(image, audio) if embed else None)


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


def teacher_copy(net: nn.Module) -> nn.Module:
    """A frozen copy of `net` (momentum / EMA teacher)."""
    teacher = copy.deepcopy(net)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float, *, buffers: bool = True) -> None:
    """θ_t ← m·θ_t + (1 − m)·θ_s for parameters and, with `buffers`, floating buffers (BatchNorm statistics; other
    buffers are copied). m = 0 makes the teacher a copy of the student."""
    for p_t, p_s in zip(teacher.parameters(), student.parameters()):
        p_t.mul_(momentum).add_(p_s.detach(), alpha=1.0 - momentum)
    if not buffers:
        return
    for b_t, b_s in zip(teacher.buffers(), student.buffers()):
        if b_t.dtype.is_floating_point:
            b_t.mul_(momentum).add_(b_s, alpha=1.0 - momentum)
        else:
            b_t.copy_(b_s)


def diagonal_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose largest logit is on the diagonal (the matching pair), for training logs."""
    return (logits.argmax(dim=1) == torch.arange(len(logits), device=logits.device)).float().mean()
