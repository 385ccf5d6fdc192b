"""DMT, Dual Mean-Teacher (baselines spec §3.7; NeurIPS 2023, Algorithm 1 of its appendix).

Two students A, B (different backbones and colour augmentations, `semisup.SemiSupPair`) and their EMA teachers.

1. Warm-up (`schedule.warmup_epochs`, labelled batches only): L = H(G, P^A) + H(G, P^B); the teachers track the
   students exactly (EMA momentum 0), so the unlabelled phase starts from the warmed-up models.
2. Unlabelled phase: before every training forward θ_t ← β·θ_t + (1 − β)·θ_s (β = `ema`, 0.999). The teachers
   (eval mode, un-augmented image) predict M^A, M^B on each unlabelled pair; each is min-max normalised and
   binarised at δ (`pl_threshold`, 0.6); the pair is kept iff IoU(M^A, M^B) ≥ τ (`iou_threshold`, 0.7); the
   pseudo-label is the intersection M^A·M^B (IPL). With D_mix = labelled rows (target = GT) ∪ kept unlabelled rows
   (target = IPL): L = (L_sup^A + L_sup^B) + λ_u(L_unsup^A + L_unsup^B), L_sup = pixel-wise BCE on D_mix,
   L_unsup = EZ-VSL contrastive loss on the unlabelled rows, λ_u = 1.
3. Map: the mean of the two teachers' probability maps (`map_range = "unit"`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import MethodEntry, ema_update, teacher_copy
from .semisup import SemiSupConfig, SemiSupPair, binarise, mask_iou, masked_mean

__all__ = ["DMTConfig", "DMT", "dmt_pseudo_labels", "build_dmt", "ENTRY"]


@dataclass(frozen=True)
class DMTConfig(SemiSupConfig):
    """DMT `[model]` table."""

    ema: float = 0.999
    pl_threshold: float = 0.6
    iou_threshold: float = 0.7
    lambda_u: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not 0.0 < self.pl_threshold <= 1.0 or not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError("pl_threshold must be in (0, 1] and iou_threshold in [0, 1]")


def dmt_pseudo_labels(map_a: torch.Tensor, map_b: torch.Tensor, delta: float, iou_threshold: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(IPL = M^A·M^B, keep = IoU ≥ τ, IoU) from two teachers' (B, h, w) maps binarised at δ after min-max."""
    m_a, m_b = binarise(map_a, delta), binarise(map_b, delta)
    iou = mask_iou(m_a, m_b)
    return m_a * m_b, iou >= iou_threshold, iou


class DMT(SemiSupPair):
    def __init__(self, cfg: DMTConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg, audio_in_bins=audio_in_bins)
        self.teacher_a = teacher_copy(self.net_a)
        self.teacher_b = teacher_copy(self.net_b)

    def teachers(self) -> dict:
        return {"a": self.teacher_a, "b": self.teacher_b}

    @torch.no_grad()
    def teacher_update(self) -> None:
        momentum = 0.0 if self.warmup else self.cfg.ema
        for k, net in self.nets().items():
            ema_update(self.teachers()[k], net, momentum)

    def forward(self, image, audio, *, mask=None, labelled=None, index=None):
        if self.training:
            self.teacher_update()
        out = super().forward(image, audio, mask=mask, labelled=labelled, index=index)
        if self.training and not self.warmup:
            with torch.no_grad():
                for k, teacher in self.teachers().items():
                    teacher.eval()
                    out[f"tp_{k}"] = teacher(image, audio)["p"].detach()
        return out

    def loss(self, emb):
        lab, unl = self.rows(emb)
        stats: dict[str, torch.Tensor] = {}
        if self.warmup:
            sup = {k: self.supervised(emb, k, emb["t"], lab) for k in self.NETS}
            total = sup["a"] + sup["b"]
        else:
            ipl, keep, iou = dmt_pseudo_labels(emb["tp_a"], emb["tp_b"], self.cfg.pl_threshold, self.cfg.iou_threshold)
            keep = keep & unl
            target = torch.where(lab.view(-1, 1, 1), emb["t"], ipl)
            rows = lab | keep
            sup = {k: self.supervised(emb, k, target, rows) for k in self.NETS}
            unsup = {k: self.unsupervised(emb, k, unl) for k in self.NETS}
            total = sup["a"] + sup["b"] + self.cfg.lambda_u * (unsup["a"] + unsup["b"])
            stats.update(loss_unsup_a=unsup["a"].detach(), loss_unsup_b=unsup["b"].detach(),
                         kept=masked_mean(keep.float(), unl).detach(), iou=masked_mean(iou, unl).detach())
        stats.update(loss_sup_a=sup["a"].detach(), loss_sup_b=sup["b"].detach())
        return total, stats

    def map_nets(self) -> list:
        """The two teachers (the map of DMT)."""
        return [self.teacher_a, self.teacher_b]


def build_dmt(cfg: DMTConfig, **kwargs) -> DMT:
    return DMT(cfg, **kwargs)


ENTRY = MethodEntry("dmt", DMTConfig, build_dmt,
                    "DMT: dual mean-teacher, IoU-filtered intersection pseudo-labels, semi-supervised")
