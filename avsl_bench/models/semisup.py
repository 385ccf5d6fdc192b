"""Shared parts of the semi-supervised methods DMT and XPL (baselines spec §3.7).

* `SemiSupConfig`: EZ-VSL encoder knobs for model A (the `EncoderConfig` fields), `b_*` knobs for model B (a
  different backbone), the map head's initial scale/bias and each model's colour augmentation.
* `MapNet`: one model — trunks + EZ-VSL's heads (`ezvsl.CosineHeads`), a per-cell probability
  p = sigmoid(s·cos + b) with learnable s, b, and its own colour jitter (`models.augment`) applied in `forward`
  (training only; colour transforms move no pixel, so box masks stay aligned).
* `SemiSupPair`: the two-model base class (`uses_targets = True`, `map_range = "unit"`); `forward` returns both
  students' embeddings and maps plus the targets, so the loop all-gathers them like any embedding; `rows` splits
  a batch into labelled and unlabelled rows.
* Functions: `pool_mask` (GT mask average-pooled to the grid), `pixel_bce` (per-sample pixel-wise BCE),
  `contrastive` (EZ-VSL multiple-instance InfoNCE on selected rows), `binarise`, `mask_iou`, `pearson`,
  `sharpen`, `PseudoLabelBank` (per-sample PL-EMA memory). EMA teachers use `base.teacher_copy` / `ema_update`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .augment import ImageAugment, augment_image
from .base import AVModel, EncoderConfig, cross_entropy_cols, cross_entropy_rows
from .encoders import SmallCNN, build_audio, build_visual
from .ezvsl import CosineHeads, mil_logits
from .maps import cosine_map, minmax

__all__ = [
    "SemiSupConfig", "MapNet", "SemiSupPair", "SpecCNN", "pool_mask", "pixel_bce", "contrastive",
    "binarise", "mask_iou", "pearson", "sharpen", "PseudoLabelBank", "masked_mean", "ramp_fraction",
    "top_fraction",
]


@dataclass(frozen=True)
class SemiSupConfig(EncoderConfig):
    """Encoders of model A (the `EncoderConfig` fields) and B (`b_*`; visual weights shared), the map head's
    initial scale and bias, and the colour jitter of each model: (brightness, contrast, saturation) strengths,
    factors drawn per sample from U[1 − s, 1 + s], applied to every sample in that order (`jitter`)."""

    b_visual: str = ""  # "" = model A's visual knobs (recipes set a different backbone)
    b_visual_widths: tuple[int, ...] = ()
    b_visual_strides: tuple[int, ...] = ()
    b_visual_pool: int = 1
    b_audio: str = ""  # "" = model A's audio knobs | resnet18 | conv1d | spec_cnn (a 2-D SmallCNN on the spectrogram)
    b_audio_widths: tuple[int, ...] = ()
    b_audio_strides: tuple[int, ...] = ()  # spec_cnn only
    map_scale: float = 10.0
    map_bias: float = 0.0
    jitter_a: tuple[float, float, float] = (0.4, 0.4, 0.4)
    jitter_b: tuple[float, float, float] = (0.2, 0.2, 0.8)

    def __post_init__(self) -> None:
        for name in ("jitter_a", "jitter_b"):
            if any(not 0.0 <= s < 1.0 for s in getattr(self, name)):
                raise ValueError(f"{name} strengths must be in [0, 1), got {getattr(self, name)}")

    def jitter(self, which: str) -> ImageAugment:
        """Model `which`'s colour jitter: brightness, contrast, saturation (fixed order, every sample), clipped to
        [0, 1] once at the end."""
        b, c, s = self.jitter_a if which == "a" else self.jitter_b
        return ImageAugment(jitter_p=1.0, brightness=b, contrast=c, saturation=s, jitter_order="fixed", clip="end")


class SpecCNN(nn.Module):
    """A 2-D SmallCNN on the (B, F, T) log spectrogram (replicated to 3 channels), global max pool → (B, C)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), strides: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.cnn = SmallCNN(widths, strides)
        self.out_channels = self.cnn.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return torch.amax(self.cnn(x.expand(-1, 3, -1, -1)), dim=(2, 3))


def _trunks(cfg: SemiSupConfig, which: str, audio_in_bins: int):
    if which == "a":
        visual, v_ch, info = build_visual(cfg.visual, widths=cfg.visual_widths, strides=cfg.visual_strides,
                                          weights=cfg.visual_weights, pool=cfg.visual_pool)  # fmt: skip
        audio, a_ch = build_audio(cfg.audio, in_bins=audio_in_bins, widths=cfg.audio_widths)
        return visual, v_ch, info, audio, a_ch
    if cfg.b_visual:
        visual, v_ch, info = build_visual(cfg.b_visual, widths=cfg.b_visual_widths, strides=cfg.b_visual_strides,
                                          weights=cfg.visual_weights, pool=cfg.b_visual_pool)  # fmt: skip
    else:
        visual, v_ch, info = build_visual(cfg.visual, widths=cfg.visual_widths, strides=cfg.visual_strides,
                                          weights=cfg.visual_weights, pool=cfg.visual_pool)  # fmt: skip
    if cfg.b_audio == "spec_cnn":
        audio = SpecCNN(cfg.b_audio_widths or (16, 32, 64, 128), cfg.b_audio_strides or (2, 2, 2, 2))
        a_ch = audio.out_channels
    elif cfg.b_audio:
        audio, a_ch = build_audio(cfg.b_audio, in_bins=audio_in_bins, widths=cfg.b_audio_widths)
    else:
        audio, a_ch = build_audio(cfg.audio, in_bins=audio_in_bins, widths=cfg.audio_widths)
    return visual, v_ch, info, audio, a_ch


class MapNet(CosineHeads):
    """One model of a pair: visual/audio trunks + heads (L2-normalised) and the probability head."""

    def __init__(self, cfg: SemiSupConfig, which: str, audio_in_bins: int) -> None:
        super().__init__()
        self.visual, v_ch, self.info, self.audio, a_ch = _trunks(cfg, which, audio_in_bins)
        self.init_heads(v_ch, a_ch, cfg.dim)
        self.scale = nn.Parameter(torch.tensor(float(cfg.map_scale)))
        self.bias = nn.Parameter(torch.tensor(float(cfg.map_bias)))
        self.jitter = cfg.jitter(which)

    def prob(self, cos: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.scale * cos + self.bias)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, *, augment: bool = False) -> dict[str, torch.Tensor]:
        if augment:
            image = augment_image(image, self.jitter)
        v, a = self.embed_visual(image), self.embed_audio(audio)
        cos = cosine_map(v, a)
        return {"v": v, "a": a, "cos": cos, "p": self.prob(cos)}


# ---------------------------------------------------------------------------------------- loss pieces


def pool_mask(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(B, S, S) 0/1 mask → (B, h, w) fraction of each grid cell covered (adaptive average pooling)."""
    return F.adaptive_avg_pool2d(mask.float().unsqueeze(1), tuple(grid)).squeeze(1)


def pixel_bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean pixel-wise binary cross-entropy H(target, prob) of (B, h, w) maps → (B,)."""
    p = prob.float().clamp(1e-6, 1.0 - 1e-6)
    return F.binary_cross_entropy(p, target.float(), reduction="none").flatten(1).mean(1)


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over rows where `keep`; 0 (still in the graph) when no row is kept."""
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp_min(1.0)


def contrastive(v: torch.Tensor, a: torch.Tensor, rows: torch.Tensor, tau: float) -> torch.Tensor:
    """EZ-VSL loss CE_row(ℓ) + CE_col(ℓ), ℓ_ij = max_p ⟨v_i(p), a_j⟩/τ, over the selected rows (0 if < 2)."""
    idx = torch.nonzero(rows, as_tuple=False).flatten()
    if idx.numel() < 2:
        return v.sum() * 0.0 + a.sum() * 0.0
    logits = mil_logits(v[idx].float(), a[idx].float(), tau)
    return cross_entropy_rows(logits) + cross_entropy_cols(logits)


def binarise(maps: torch.Tensor, delta: float) -> torch.Tensor:
    """1 where the min-max-normalised map is ≥ δ (float 0/1)."""
    return (minmax(maps) >= delta).float()


def mask_iou(m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """IoU of binary (B, h, w) maps → (B,); 0 when both are empty."""
    inter = (m1 * m2).flatten(1).sum(1)
    union = ((m1 + m2) > 0).float().flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over spatial positions of (B, h, w) maps → (B,); 0 when a map is constant."""
    xc = x.flatten(1).float() - x.flatten(1).float().mean(1, keepdim=True)
    yc = y.flatten(1).float() - y.flatten(1).float().mean(1, keepdim=True)
    den = (xc.pow(2).sum(1) * yc.pow(2).sum(1)).sqrt()
    return torch.where(den > 0, (xc * yc).sum(1) / den.clamp_min(1e-12), torch.zeros_like(den))


def sharpen(x: torch.Tensor, a: float) -> torch.Tensor:
    """φ(x) = 1 / (1 + exp(−a(x − 0.5))) (XPL's sharpening)."""
    return torch.sigmoid(a * (x - 0.5))


class PseudoLabelBank:
    """Per-sample pseudo-label memory, indexed by the dataset index: PL^t = β·PL^{t−1} + (1 − β)·x on every
    update after the first (which stores x). Training state only: not part of the checkpoint."""

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)
        self.values: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None

    def _grow(self, n: int, like: torch.Tensor) -> None:
        if self.values is None:
            self.values = like.new_zeros((n, *like.shape[1:]))
            self.seen = torch.zeros(n, dtype=torch.bool, device=like.device)
        elif n > len(self.values):
            extra = n - len(self.values)
            self.values = torch.cat([self.values, like.new_zeros((extra, *like.shape[1:]))])
            self.seen = torch.cat([self.seen, torch.zeros(extra, dtype=torch.bool, device=like.device)])

    @torch.no_grad()
    def update(self, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Fold `x` (B, …) into the entries `index` (unique) and return their new values."""
        if index.numel() == 0:
            return x.detach().clone()
        index = index.long()
        self._grow(int(index.max()) + 1, x)
        old, seen = self.values[index], self.seen[index]
        new = torch.where(seen.view(-1, *([1] * (x.dim() - 1))), self.beta * old + (1.0 - self.beta) * x.detach(),
                          x.detach())  # fmt: skip
        self.values[index], self.seen[index] = new, True
        return new


# ----------------------------------------------------------------------------------------------- pair


class SemiSupPair(AVModel):
    """Two `MapNet`s with different backbones and augmentations; the loop feeds masks, labelled flags, indices.

    `forward` output (gathered by the loop): for k ∈ {a, b} `v_k`, `a_k` (embeddings), `cos_k`, `p_k` (maps with
    gradient); `t` (GT mask pooled to the grid; zero for unlabelled rows), `lab` (1.0 labelled / 0.0), `idx`.
    Subclasses add their pseudo-labelling (`loss`) and name the models averaged into the map (`map_nets`).
    """

    map_range = "unit"
    uses_targets = True
    NETS = ("a", "b")

    def __init__(self, cfg: SemiSupConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg.tau)
        self.cfg = cfg
        self.net_a = MapNet(cfg, "a", audio_in_bins)
        self.net_b = MapNet(cfg, "b", audio_in_bins)
        self.weights_info = {"visual": self.net_a.info.to_json(), "visual_b": self.net_b.info.to_json()}
        self.epoch, self.warmup, self.phase_start = 0, False, None

    def nets(self) -> dict[str, MapNet]:
        return {"a": self.net_a, "b": self.net_b}

    def start_epoch(self, epoch: int, *, warmup: bool) -> None:
        """Called by the loop before each epoch: the phase (warm-up on labelled data or unlabelled phase)."""
        self.epoch, self.warmup = int(epoch), bool(warmup)
        if not warmup and self.phase_start is None:
            self.phase_start = int(epoch)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, *, mask: torch.Tensor | None = None,
                labelled: torch.Tensor | None = None, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for k, net in self.nets().items():
            res = net(image, audio, augment=self.training)
            out.update({f"{name}_{k}": t for name, t in res.items()})
        grid = out["p_a"].shape[-2:]
        if out["p_b"].shape[-2:] != grid:
            raise ValueError(f"models A and B give different map grids {tuple(grid)} and "
                             f"{tuple(out['p_b'].shape[-2:])}; choose B's strides/pool to match")
        n = image.shape[0]
        out["t"] = pool_mask(mask, grid) if mask is not None else out["p_a"].new_zeros((n, *grid))
        lab = labelled if labelled is not None else torch.zeros(n, dtype=torch.bool, device=image.device)
        out["lab"] = lab.to(out["p_a"].dtype).detach()
        out["idx"] = (index if index is not None else torch.arange(n, device=image.device)).long()
        return out

    @staticmethod
    def rows(emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(labelled, unlabelled) row masks of a gathered batch."""
        lab = emb["lab"] > 0.5
        return lab, ~lab

    def supervised(self, emb: dict[str, torch.Tensor], k: str, target: torch.Tensor, rows: torch.Tensor):
        """Pixel-wise BCE of model k's map against `target` on `rows`."""
        return masked_mean(pixel_bce(emb[f"p_{k}"], target), rows)

    def unsupervised(self, emb: dict[str, torch.Tensor], k: str, rows: torch.Tensor) -> torch.Tensor:
        return contrastive(emb[f"v_{k}"], emb[f"a_{k}"], rows, self.tau)

    def map_nets(self) -> list[MapNet]:
        """The models whose probability maps make the inference map (default: the two students)."""
        return [self.net_a, self.net_b]

    @torch.no_grad()
    def localize(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Mean of the probability maps of `map_nets` (no augmentation)."""
        return torch.stack([net(image, audio)["p"] for net in self.map_nets()]).mean(0)


def ramp_fraction(epochs_in_phase: int, ramp_epochs: int) -> float:
    """Admitted share of the reliable pairs in the `epochs_in_phase`-th epoch (0-based) of the unlabelled phase:
    (e + 1) / ramp_epochs, capped at 1."""
    if ramp_epochs <= 0:
        return 1.0
    return min(1.0, (epochs_in_phase + 1) / ramp_epochs)


def top_fraction(scores: torch.Tensor, eligible: torch.Tensor, fraction: float) -> torch.Tensor:
    """The ceil(fraction · n_eligible) eligible rows with the highest scores (bool mask)."""
    n = int(eligible.sum())
    k = int(math.ceil(fraction * n - 1e-9))
    keep = torch.zeros_like(eligible)
    if k <= 0:
        return keep
    ranked = torch.where(eligible, scores.float(), torch.full_like(scores.float(), -math.inf))
    keep[torch.topk(ranked, k).indices] = True
    return keep
