"""Deep Multimodal Clustering, DMC (Hu et al. CVPR 2019; baselines spec §3.7b), re-implemented in the shared
framework.

Features u: the visual grid (h·w positions) and the audio trunk's pre-pool grid (frequency × time positions; the
CPU-preset conv1d trunk gives time positions), each through a 1×1-conv head to `dim` and L2-normalised.

Differentiable clustering per modality, k centres, T iterations, from initial centres that are learnable and shared
by both modalities (centre j of the audio corresponds to centre j of the image):
  s_ij = softmax_j(z·⟨u_i, ĉ_j⟩)  (= softmax_j(−z·d_ij), d_ij = −⟨u_i, ĉ_j⟩),   ĉ_j ← Σ_i s_ij u_i / ‖Σ_i s_ij u_i‖.
The returned assignment is taken against the final centres. Clustering runs in float32 (autocast off).

Correspondence sim(v, a) = (1/k) Σ_j cos(c_j^v, c_j^a); loss = mean over images i and in-batch negatives n ≠ i of
ReLU(Δ + sim(v_i, a_n) − sim(v_i, a_i)).

Map (`map_range = "unit"`, a soft assignment in [0, 1]): j* = argmax_j cos(c_j^v, c_j^a), A(x, y) = s_{(x,y), j*}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import AVModel, EncoderConfig, MethodEntry, diagonal_accuracy
from .encoders import build_trunks, init_scratch
from .grids import audio_feature_map, grid_tokens

__all__ = ["DMCConfig", "DMC", "soft_cluster", "correspondence", "build_dmc", "ENTRY"]


@dataclass(frozen=True)
class DMCConfig(EncoderConfig):
    """DMC `[model]` table (`tau` is unused: the loss is a max-margin hinge on mean centre cosines)."""

    clusters: int = 10
    iters: int = 3
    z: float = 10.0  # smooth-max sharpness of the soft assignment
    margin: float = 0.5

    def __post_init__(self) -> None:
        if self.clusters < 1 or self.iters < 1 or self.z <= 0 or self.margin < 0:
            raise ValueError("clusters ≥ 1, iters ≥ 1, z > 0 and margin ≥ 0 required")


def soft_cluster(u: torch.Tensor, init: torch.Tensor, iters: int, z: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster tokens u (B, N, D) from centres init (k, D) → (normalised centres (B, k, D), assignment (B, N, k);
    the assignment sums to 1 over centres)."""
    c = F.normalize(init, dim=-1).unsqueeze(0).expand(u.shape[0], -1, -1)
    for _ in range(iters):
        s = torch.softmax(z * torch.einsum("bnd,bkd->bnk", u, c), dim=-1)
        c = F.normalize(torch.einsum("bnk,bnd->bkd", s, u), dim=-1)
    return c, torch.softmax(z * torch.einsum("bnd,bkd->bnk", u, c), dim=-1)


def correspondence(cv: torch.Tensor, ca: torch.Tensor) -> torch.Tensor:
    """sim(v_i, a_n) = (1/k) Σ_j ⟨ĉ_j^v,i, ĉ_j^a,n⟩ for centres (B, k, D), (B', k, D) → (B, B')."""
    return torch.einsum("ikd,nkd->in", cv, ca) / cv.shape[1]


class DMC(AVModel):
    """Encoders + 1×1 heads, shared learnable initial centres, per-modality soft clustering."""

    map_range = "unit"

    def __init__(self, cfg: DMCConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg.tau)
        self.cfg = cfg
        self.visual, v_ch, info, self.audio, a_ch = build_trunks(cfg, audio_in_bins=audio_in_bins)
        self.visual_head = nn.Conv2d(v_ch, cfg.dim, kernel_size=1)
        self.audio_head = nn.Conv2d(a_ch, cfg.dim, kernel_size=1)
        init_scratch(self.visual_head)
        init_scratch(self.audio_head)
        self.centres = nn.Parameter(torch.randn(cfg.clusters, cfg.dim))
        self.weights_info = {"visual": info.to_json()}

    def visual_clusters(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        x = self.visual_head(self.visual(image))
        c, s = self._cluster(x)
        return c, s, (x.shape[2], x.shape[3])

    def audio_clusters(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._cluster(self.audio_head(audio_feature_map(self.audio, audio)))

    def _cluster(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft clustering of a (B, D, *grid) head output, in float32 (autocast off)."""
        with torch.autocast(x.device.type, enabled=False):
            u = F.normalize(grid_tokens(x).float(), dim=-1)
            return soft_cluster(u, self.centres.float(), self.cfg.iters, self.cfg.z)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        cv, _, _ = self.visual_clusters(image)
        ca, _ = self.audio_clusters(audio)
        return {"cv": cv, "ca": ca}

    def loss(self, emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sim = correspondence(emb["cv"].float(), emb["ca"].float())
        b = sim.shape[0]
        pos = sim.diagonal().unsqueeze(1)
        neg = ~torch.eye(b, dtype=torch.bool, device=sim.device)
        hinge = F.relu(self.cfg.margin + sim - pos)[neg].mean()
        with torch.no_grad():
            acc = diagonal_accuracy(sim)
        return hinge, {"sim_pos": pos.mean().detach(), "sim_neg": sim[neg].mean().detach(), "acc_i2a": acc}

    @torch.no_grad()
    def localize(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        cv, s, (h, w) = self.visual_clusters(image)
        ca, _ = self.audio_clusters(audio)
        j = (cv * ca).sum(dim=-1).argmax(dim=1)  # the sounding cluster
        return s.gather(2, j.view(-1, 1, 1).expand(-1, s.shape[1], 1)).reshape(-1, h, w)


def build_dmc(cfg: DMCConfig, **kwargs) -> DMC:
    return DMC(cfg, **kwargs)


ENTRY = MethodEntry("dmc", DMCConfig, build_dmc, "DMC: shared-init soft clustering per modality, max-margin loss")
