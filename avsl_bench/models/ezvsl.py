"""EZ-VSL (baselines spec §3.3): multiple-instance InfoNCE with max over locations, both directions.

S_ij(p) = ⟨v_i(p), a_j⟩ / τ with L2-normalised visual locations v_i(p) and audio embedding a_j;
ℓ_ij = max_p S_ij(p); L = CE_row(ℓ) + CE_col(ℓ). Map A = S_ii. An optional Dropout on the visual map before the
head (`visual_dropout`, 0 for EZ-VSL) lets FNAC-style variants reuse the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import (AVModel, EncoderConfig, MethodEntry, cross_entropy_cols, cross_entropy_rows,
                   diagonal_accuracy)
from .encoders import build_trunks, init_scratch
from .maps import cosine_map

__all__ = ["EZVSLConfig", "EZVSL", "CosineHeads", "mil_logits", "build_ezvsl", "ENTRY"]


@dataclass(frozen=True)
class EZVSLConfig(EncoderConfig):
    """EZ-VSL `[model]` table."""

    visual_dropout: float = 0.0


def mil_logits(v: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """ℓ_ij = max_p ⟨v_i(p), a_j⟩ / τ for v (B, D, h, w) and a (B', D) → (B, B')."""
    sims = torch.einsum("ndhw,md->nmhw", v, a).flatten(2)
    return sims.amax(dim=-1) / tau


class CosineHeads(nn.Module):
    """EZ-VSL's heads on the subclass's `visual` / `audio` trunks: a 1×1 conv on the visual map (after an optional
    Dropout) and a linear layer on the audio embedding, both L2-normalised over channels."""

    def init_heads(self, v_ch: int, a_ch: int, dim: int, *, visual_dropout: float | None = None) -> None:
        """Create the heads (scratch init); `visual_dropout` None = no Dropout layer."""
        self.visual_dropout = nn.Identity() if visual_dropout is None else nn.Dropout(visual_dropout)
        self.visual_head = nn.Conv2d(v_ch, dim, kernel_size=1)
        self.audio_head = nn.Linear(a_ch, dim)
        init_scratch(self.visual_head)
        init_scratch(self.audio_head)

    def embed_visual(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_head(self.visual_dropout(self.visual(image))), dim=1)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_head(self.audio(audio)), dim=1)


class EZVSL(AVModel, CosineHeads):
    """Visual trunk + 1×1-conv head, audio trunk + linear head, both L2-normalised."""

    def __init__(self, cfg: EZVSLConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg.tau)
        self.cfg = cfg
        self.visual, v_ch, info, self.audio, a_ch = build_trunks(cfg, audio_in_bins=audio_in_bins)
        self.init_heads(v_ch, a_ch, cfg.dim, visual_dropout=cfg.visual_dropout)
        self.weights_info = {"visual": info.to_json()}

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"v": self.embed_visual(image), "a": self.embed_audio(audio)}

    def loss(self, emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = mil_logits(emb["v"].float(), emb["a"].float(), self.tau)
        row, col = cross_entropy_rows(logits), cross_entropy_cols(logits)
        with torch.no_grad():
            acc = diagonal_accuracy(logits)
        return row + col, {"loss_i2a": row.detach(), "loss_a2i": col.detach(), "acc_i2a": acc}

    def embeddings(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image: spatial max-pool of the normalised visual map (EZ-VSL's global embedding); audio: a."""
        return self.localize_and_embed(image, audio)[1]

    @torch.no_grad()
    def localize_and_embed(self, image: torch.Tensor, audio: torch.Tensor, *, embed: bool = True
                           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Map A = S_ii and (with `embed`) the embeddings, from one pass of the encoders."""
        v, a = self.embed_visual(image).float(), self.embed_audio(audio).float()
        return cosine_map(v, a) / self.tau, ((v.amax(dim=(2, 3)), a) if embed else None)


def build_ezvsl(cfg: EZVSLConfig, **kwargs) -> EZVSL:
    return EZVSL(cfg, **kwargs)


ENTRY = MethodEntry("ezvsl", EZVSLConfig, build_ezvsl, "EZ-VSL: MIL InfoNCE, max over locations, CE both directions")
