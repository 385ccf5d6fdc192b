"""SLAVC (baselines spec §3.4): two heads per modality, extreme visual dropout, momentum (target) encoders.

Online features v¹, v² (visual 1×1 convs after Dropout(p) on the trunk map), a¹, a² (audio linears); target
copies of both trunks and all four heads, θ̂ ← m·θ̂ + (1 − m)·θ before every training forward (parameters only;
the target BatchNorm statistics follow the target's own train-mode forwards, as upstream). Target features are
computed in train mode (dropout active), as upstream.

  P¹_nm(p) = softmax_m ⟨v¹_n(p), â¹_m⟩/τ,   P²_nm(p) = softmax_p ⟨v²_n(p), â²_m⟩/τ,
  z_nm = log Σ_p P¹_nm(p) P²_nm(p);          ẑ: the same with (v̂, a) in place of (v, â).

Loss forms (`loss_form`):
* `released` (default; the published numbers): L = CE_row(z) + CE_row(ẑ) — both terms classify the audio of
  each image.
* `paper` (Eq. 6): L = CE_row(z) + CE_col(ž), where ž is ẑ with the P¹ softmax taken over images n instead of
  audios m, i.e. an audio→image term that classifies the image of each audio (avsl-bench's reading of Eq. 6).

Map A = ½(⟨v¹, a¹⟩ + ⟨v², a²⟩)/τ with dropout off, from the momentum features (`map_features = "momentum"`,
paper Eq. 7, default) or the online ones (`online`, the released test script).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import (AVModel, EncoderConfig, MethodEntry, cross_entropy_cols, cross_entropy_rows,
                   diagonal_accuracy, ema_update, teacher_copy)
from .encoders import build_trunks, init_scratch
from .maps import cosine_map

__all__ = ["SLAVCConfig", "SLAVC", "slavc_logits", "build_slavc", "ENTRY"]

MAP_FEATURES = ("momentum", "online")
LOSS_FORMS = ("released", "paper")


@dataclass(frozen=True)
class SLAVCConfig(EncoderConfig):
    """SLAVC `[model]` table."""

    visual_dropout: float = 0.9
    audio_dropout: float = 0.0
    momentum: float = 0.999
    map_features: str = "momentum"
    loss_form: str = "released"

    def __post_init__(self) -> None:
        if self.map_features not in MAP_FEATURES:
            raise ValueError(f"map_features must be one of {MAP_FEATURES}, got {self.map_features!r}")
        if self.loss_form not in LOSS_FORMS:
            raise ValueError(f"loss_form must be one of {LOSS_FORMS}, got {self.loss_form!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


def slavc_logits(v1: torch.Tensor, v2: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, tau: float,
                 *, softmax1_over: str = "audio") -> torch.Tensor:
    """z_nm = log Σ_p P¹_nm(p) P²_nm(p) for visual (B, D, h, w) and audio (B, D) features → (B, B).

    P¹ is a softmax over audios m (`softmax1_over="audio"`) or over images n (`"image"`); P² a softmax over p.
    Computed in log space (logsumexp) for stability; equal to the upstream product form.
    """
    s1 = torch.einsum("ndhw,md->nmhw", v1, a1).flatten(2) / tau  # (n, m, p)
    s2 = torch.einsum("ndhw,md->nmhw", v2, a2).flatten(2) / tau
    log_p1 = torch.log_softmax(s1, dim=1 if softmax1_over == "audio" else 0)
    log_p2 = torch.log_softmax(s2, dim=2)
    return torch.logsumexp(log_p1 + log_p2, dim=2)


class _Branch(nn.Module):
    """One set of trunks + the four heads (online or target)."""

    def __init__(self, cfg: SLAVCConfig, audio_in_bins: int) -> None:
        super().__init__()
        self.visual, v_ch, self.info, self.audio, a_ch = build_trunks(cfg, audio_in_bins=audio_in_bins)
        self.visual_dropout = nn.Dropout(cfg.visual_dropout)
        self.audio_dropout = nn.Dropout(cfg.audio_dropout)
        self.v1, self.v2 = nn.Conv2d(v_ch, cfg.dim, 1), nn.Conv2d(v_ch, cfg.dim, 1)
        self.a1, self.a2 = nn.Linear(a_ch, cfg.dim), nn.Linear(a_ch, cfg.dim)
        for head in (self.v1, self.v2, self.a1, self.a2):
            init_scratch(head)

    def visual_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.visual_dropout(self.visual(image))
        return F.normalize(self.v1(x), dim=1), F.normalize(self.v2(x), dim=1)

    def audio_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.audio_dropout(self.audio(audio))
        return F.normalize(self.a1(x), dim=1), F.normalize(self.a2(x), dim=1)


class SLAVC(AVModel):
    def __init__(self, cfg: SLAVCConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg.tau)
        self.cfg = cfg
        self.online = _Branch(cfg, audio_in_bins)
        self.target = teacher_copy(self.online)
        self.weights_info = {"visual": self.online.info.to_json()}

    def momentum_update(self) -> None:
        """θ̂ ← m·θ̂ + (1 − m)·θ, parameters only."""
        ema_update(self.target, self.online, self.cfg.momentum, buffers=False)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.momentum_update()
        v1, v2 = self.online.visual_features(image)
        a1, a2 = self.online.audio_features(audio)
        with torch.no_grad():
            tv1, tv2 = self.target.visual_features(image)
            ta1, ta2 = self.target.audio_features(audio)
        return {"v1": v1, "v2": v2, "a1": a1, "a2": a2, "tv1": tv1, "tv2": tv2, "ta1": ta1, "ta2": ta2}

    def loss(self, emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        e = {k: t.float() for k, t in emb.items()}
        z = slavc_logits(e["v1"], e["v2"], e["ta1"], e["ta2"], self.tau)
        if self.cfg.loss_form == "released":
            z_hat = slavc_logits(e["tv1"], e["tv2"], e["a1"], e["a2"], self.tau)
            first, second = cross_entropy_rows(z), cross_entropy_rows(z_hat)
        else:
            z_hat = slavc_logits(e["tv1"], e["tv2"], e["a1"], e["a2"], self.tau, softmax1_over="image")
            first, second = cross_entropy_rows(z), cross_entropy_cols(z_hat)
        with torch.no_grad():
            acc = diagonal_accuracy(z)
        return first + second, {"loss_z": first.detach(), "loss_zhat": second.detach(), "acc_i2a": acc}

    @torch.no_grad()
    def localize(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        branch = self.target if self.cfg.map_features == "momentum" else self.online
        v1, v2 = branch.visual_features(image)
        a1, a2 = branch.audio_features(audio)
        return 0.5 * (cosine_map(v1, a1) + cosine_map(v2, a2)) / self.tau


def build_slavc(cfg: SLAVCConfig, **kwargs) -> SLAVC:
    return SLAVC(cfg, **kwargs)


ENTRY = MethodEntry("slavc", SLAVCConfig, build_slavc, "SLAVC: two heads, visual dropout 0.9, momentum encoders")
