"""XPL, cross pseudo-labeling (baselines spec §3.7; "Cross Pseudo-Labeling for Semi-Supervised Audio-Visual Source
Localization", Section 2).

Two models A, B (different backbones and colour augmentations, `semisup.SemiSupPair`), no teachers.

1. Warm-up (`schedule.warmup_epochs`, labelled batches only): L = H(G, P^A) + H(G, P^B).
2. Unlabelled phase, per unlabelled pair of the (global) batch:
   * curriculum selection: Pearson ρ of the two models' cosine maps over spatial positions; pairs with
     ρ ≤ `pearson_threshold` (0.8) are rejected; of the rest, the share ramp(e) = min(1, (e + 1)/`ramp_epochs`)
     with the highest ρ is admitted in the e-th epoch of the phase (*choice*: ranked within the batch);
   * soft pseudo-labels: PL_k ← β·PL_k + (1 − β)·φ(P^k), φ(x) = sigmoid(a(x − 0.5)) (`sharpen` a = 10), β = `pl_ema`
     (0.7), one memory bank per model indexed by the sample index (every unlabelled pair updates it; the first
     visit stores φ(P^k));
   * cross-refine: L_cross^A = H(PL_B, P^A), L_cross^B = H(PL_A, P^B) on the admitted pairs (pixel-wise BCE).
   L = Σ_{k∈{A,B}} (L_cross^k + L_sup^k + λ_u·L_unsup^k), L_sup = BCE against the GT on labelled rows,
   L_unsup = EZ-VSL contrastive loss on the unlabelled rows, λ_u = 0.5.
3. Map: the mean of the two models' probability maps (`map_range = "unit"`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import MethodEntry
from .semisup import (PseudoLabelBank, SemiSupConfig, SemiSupPair, masked_mean, pearson, pixel_bce, ramp_fraction,
                      sharpen, top_fraction)

__all__ = ["XPLConfig", "XPL", "xpl_selection", "build_xpl", "ENTRY"]


@dataclass(frozen=True)
class XPLConfig(SemiSupConfig):
    """XPL `[model]` table."""

    pearson_threshold: float = 0.8
    ramp_epochs: int = 5
    sharpen: float = 10.0
    pl_ema: float = 0.7
    lambda_u: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.pl_ema < 1.0:
            raise ValueError(f"pl_ema must be in [0, 1), got {self.pl_ema}")
        if not -1.0 <= self.pearson_threshold < 1.0 or self.ramp_epochs < 0:
            raise ValueError("pearson_threshold must be in [-1, 1) and ramp_epochs ≥ 0")


def xpl_selection(cos_a: torch.Tensor, cos_b: torch.Tensor, rows: torch.Tensor, threshold: float, fraction: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(admitted rows, ρ): among `rows` with ρ > threshold, the top `fraction` by ρ."""
    rho = pearson(cos_a.detach(), cos_b.detach())
    return top_fraction(rho, rows & (rho > threshold), fraction), rho


class XPL(SemiSupPair):
    def __init__(self, cfg: XPLConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg, audio_in_bins=audio_in_bins)
        self.banks = {k: PseudoLabelBank(cfg.pl_ema) for k in self.NETS}

    def loss(self, emb):
        lab, unl = self.rows(emb)
        sup = {k: self.supervised(emb, k, emb["t"], lab) for k in self.NETS}
        stats: dict[str, torch.Tensor] = {"loss_sup_a": sup["a"].detach(), "loss_sup_b": sup["b"].detach()}
        if self.warmup:
            return sup["a"] + sup["b"], stats
        fraction = ramp_fraction(self.epoch - (self.phase_start or 0), self.cfg.ramp_epochs)
        admit, rho = xpl_selection(emb["cos_a"], emb["cos_b"], unl, self.cfg.pearson_threshold, fraction)
        u_idx = torch.nonzero(unl, as_tuple=False).flatten()
        pl = {}
        for k in self.NETS:  # PL-EMA of the sharpened maps, per sample
            values = self.banks[k].update(emb["idx"][u_idx], sharpen(emb[f"p_{k}"][u_idx].detach(), self.cfg.sharpen))
            pl[k] = torch.zeros_like(emb[f"p_{k}"]).index_copy(0, u_idx, values.to(emb[f"p_{k}"].dtype))
        other = {"a": "b", "b": "a"}
        total = emb["p_a"].new_zeros(())
        for k in self.NETS:
            cross = masked_mean(pixel_bce(emb[f"p_{k}"], pl[other[k]]), admit)
            unsup = self.unsupervised(emb, k, unl)
            total = total + cross + sup[k] + self.cfg.lambda_u * unsup
            stats.update({f"loss_cross_{k}": cross.detach(), f"loss_unsup_{k}": unsup.detach()})
        stats.update(admitted=masked_mean(admit.float(), unl).detach(), rho=masked_mean(rho, unl).detach())
        return total, stats


def build_xpl(cfg: XPLConfig, **kwargs) -> XPL:
    return XPL(cfg, **kwargs)


ENTRY = MethodEntry("xpl", XPLConfig, build_xpl,
                    "XPL: cross pseudo-labeling, Pearson curriculum, sharpened PL-EMA, semi-supervised")
