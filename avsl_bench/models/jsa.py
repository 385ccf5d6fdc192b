"""Joint Slot Attention, JSA (baselines spec §3.6).

Tokens: visual trunk → 1×1 conv → h·w tokens; audio trunk (pre-pool grid) → 1×1 conv → max over frequency → one
token per time position (16 for the 5 s / hop-160 ResNet-18 input, the conv1d time positions in the CPU preset).
In training each token is replaced by a learnable (per-modality) mask token with probability `mask_prob`.

Training augmentation (`augment`, §3.6; `forward` in training mode only, `localize` / `embeddings` never): resize
246 → random crop → flip happen in the data pipeline; here, per sample (`models.augment`): GaussianBlur (k = 5,
σ ~ U[0.1, 2]) p = 0.8 → ColorJitter(0.8, 0.8, 0.8, 0.2) p = 0.8 (ops in a random order per sample, as torchvision)
→ grayscale p = 0.2 on the image, and FNAC's SpecAugment on the spectrogram (one frequency and one time mask, widths
in {0…9}, filled with 0; start ranges [0, 200) / [0, 257) as upstream, cut to the axis lengths).

Slot attention per modality (K slots from one learnable K×D init shared by both modalities, `slot_iters`
iterations, LN / q, k, v / GRU / residual MLP D→2D→D); attention = softmax over slots of q·kᵀ/√D, + ε, then
renormalised over tokens. From the last iteration: ia^{v,v}, ia^{a,a} and the cross attentions ca^{a,v} (audio
queries over visual keys), ca^{v,a}. With ŝ the L2-normalised final slots, slot 0 = target:

  L_info  = CE_row(C/τ) + CE_col(C/τ), C_ij = ⟨ŝ_v,i⁰, ŝ_a,j⁰⟩, k-reciprocal false negatives masked to −∞;
  L_div   = Σ_modality mean_{i≠j} ReLU(⟨ŝ^i, ŝ^j⟩);
  L_att   = MSE(ca^{a,v}[0], sg ia^{v,v}[0]) + MSE(ca^{v,a}[0], sg ia^{a,a}[0]);
  L_recon = MSE(spatial-broadcast decoder(slots), sg unmasked tokens), both modalities;
  L = L_info + w_recon·L_recon + w_div·L_div + w_att·L_att   (1 / 0.1 / 0.1 / 100).

Per-sample terms (div, att, recon) are computed in `forward`; `loss` averages them and adds L_info over the global
batch. Slot attention and decoders run in float32 (autocast off) for a stable ε / softmax under fp16 AMP.

Map (`map_range = "unit"`, per-image min-max in [0, 1]): no masking; the last iteration's slot-0 attentions with
logits × `infer_sharpening`: M = α·minmax(ca^{a,v}[0]) + (1 − α)·minmax(ia^{v,v}[0]) on the visual grid.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .augment import ImageAugment, SpecAugment, augment_image, spec_augment
from .base import (AVModel, EncoderConfig, MethodEntry, cross_entropy_cols, cross_entropy_rows,
                   diagonal_accuracy)
from .encoders import build_trunks, init_scratch
from .grids import audio_feature_map, grid_tokens
from .maps import minmax

__all__ = ["JSAConfig", "JSA", "slot_attention_weights", "reciprocal_mask", "build_jsa", "ENTRY"]

EPS = 1e-8


@dataclass(frozen=True)
class JSAConfig(EncoderConfig):
    """JSA `[model]` table (dim = token and slot width)."""

    num_slots: int = 2
    slot_iters: int = 5
    mask_prob: float = 0.1
    reciprocal_k: int = 20  # capped at the global batch size
    w_recon: float = 0.1
    w_div: float = 0.1
    w_att: float = 100.0
    infer_sharpening: float = 0.1  # logit scale of the map attentions (inference only)
    alpha: float = 0.6  # map weight of ca^{a,v} (paper Eq. 14; the released code uses 0.4)
    max_positions: int = 64  # rows / columns of the decoders' learned positional embeddings
    # training augmentation (§3.6), applied in `forward` while training; augment = false turns it all off
    augment: bool = True
    blur_p: float = 0.8
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # GaussianBlur, kernel 5
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.2
    spec_mask_width: int = 9  # SpecAugment widths uniform in {0, …, 9}
    spec_mask_starts: tuple[int, int] = (200, 257)  # upstream start ranges (frequency, time), cut to the axes

    def __post_init__(self) -> None:
        self.image_augmentation()  # validates the augmentation knobs
        self.spec_augmentation()
        if self.num_slots < 2 or self.slot_iters < 1:
            raise ValueError("num_slots must be ≥ 2 and slot_iters ≥ 1")
        if not 0.0 <= self.mask_prob < 1.0 or not 0.0 <= self.alpha <= 1.0:
            raise ValueError("mask_prob must be in [0, 1) and alpha in [0, 1]")
        if self.reciprocal_k < 1 or self.infer_sharpening <= 0 or self.max_positions < 1:
            raise ValueError("reciprocal_k ≥ 1, infer_sharpening > 0 and max_positions ≥ 1 required")

    def image_augmentation(self) -> ImageAugment:
        """The image augmentation (nothing when `augment` is off)."""
        if not self.augment:
            return ImageAugment()
        b, c, s, h = self.jitter
        return ImageAugment(blur_p=self.blur_p, blur_kernel=5, blur_sigma=self.blur_sigma, jitter_p=self.jitter_p,
                            brightness=b, contrast=c, saturation=s, hue=h, jitter_order="random", clip="each",
                            grayscale_p=self.grayscale_p)

    def spec_augmentation(self) -> SpecAugment:
        """FNAC's SpecAugment (nothing when `augment` is off)."""
        if not self.augment:
            return SpecAugment(p=0.0)
        return SpecAugment(max_width=self.spec_mask_width, freq_start=self.spec_mask_starts[0],
                           time_start=self.spec_mask_starts[1])


def slot_attention_weights(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, K, D) queries × (B, N, D) keys → (B, K, N): softmax over slots of q·kᵀ·scale, + ε, renormalised over
    tokens (each slot's weights sum to 1 over the N tokens)."""
    attn = torch.einsum("bkd,bnd->bkn", q, k).mul(scale).softmax(dim=1) + EPS
    return attn / attn.sum(dim=-1, keepdim=True)


@torch.no_grad()
def reciprocal_mask(sv: torch.Tensor, sa: torch.Tensor, k: int) -> torch.Tensor:
    """k-reciprocal false negatives (B, B), bool: Q_ij = [j ∈ topk⟨sv_i, sv_·⟩ ∧ j ∈ topk⟨sa_i, sa_·⟩]; masked iff
    Q_ij ∧ Q_ji ∧ i ≠ j (symmetric, never the diagonal). k is capped at the batch size."""
    b = sv.shape[0]
    k = min(int(k), b)

    def top(x: torch.Tensor) -> torch.Tensor:
        idx = (x @ x.t()).topk(k, dim=1).indices
        return torch.zeros(b, b, dtype=torch.bool, device=x.device).scatter_(1, idx, True)

    q = top(sv.float()) & top(sa.float())
    return q & q.t() & ~torch.eye(b, dtype=torch.bool, device=sv.device)


class _SlotBranch(nn.Module):
    """One modality's slot-attention parameters: LNs, q/k/v, GRU cell, residual MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_in, self.norm_slots, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.scale = dim ** -0.5

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm_in(tokens)
        return self.to_k(x), self.to_v(x)

    def iterate(self, init: torch.Tensor, k: torch.Tensor, v: torch.Tensor, iters: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(final slots, last iteration's queries, last iteration's attention) from init (B, K, D)."""
        slots = init
        b, n_slots, d = init.shape
        for _ in range(iters):
            q = self.to_q(self.norm_slots(slots))
            attn = slot_attention_weights(q, k, self.scale)
            updates = torch.einsum("bkn,bnd->bkd", attn, v)
            slots = self.gru(updates.reshape(-1, d), slots.reshape(-1, d)).reshape(b, n_slots, d)
            slots = slots + self.mlp(self.norm_ff(slots))
        return slots, q, attn


class _BroadcastDecoder(nn.Module):
    """Spatial-broadcast decoder: slot + learned (row, column) positional embedding → 4-layer MLP → feature and
    alpha logit per position; alpha softmax over slots composites the slots' features."""

    def __init__(self, dim: int, max_positions: int) -> None:
        super().__init__()
        self.row = nn.Embedding(max_positions, dim // 2)
        self.col = nn.Embedding(max_positions, dim - dim // 2)
        nn.init.uniform_(self.row.weight)
        nn.init.uniform_(self.col.weight)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                                 nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim + 1))  # fmt: skip
        self.max_positions = max_positions

    def forward(self, slots: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if max(h, w) > self.max_positions:
            raise ValueError(f"token grid {h}x{w} exceeds max_positions = {self.max_positions}")
        dev = slots.device
        col = self.col(torch.arange(w, device=dev)).unsqueeze(0).expand(h, -1, -1)
        row = self.row(torch.arange(h, device=dev)).unsqueeze(1).expand(-1, w, -1)
        pos = torch.cat([col, row], dim=-1).reshape(h * w, -1)  # (N, D)
        out = self.mlp(slots.unsqueeze(2) + pos)  # (B, K, N, D + 1)
        feat, alpha = out[..., :-1], out[..., -1].softmax(dim=1)
        return torch.einsum("bkn,bknd->bnd", alpha, feat)


def _pairwise_div(slots: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over ordered slot pairs i ≠ j of ReLU(⟨ŝ^i, ŝ^j⟩) for normalised slots (B, K, D)."""
    k = slots.shape[1]
    sim = torch.einsum("bid,bjd->bij", slots, slots).relu()
    off = ~torch.eye(k, dtype=torch.bool, device=slots.device)
    return sim[:, off].mean(dim=1)


class JSA(AVModel):
    """Visual / audio tokens, per-modality slot attention, reconstruction decoders."""

    map_range = "unit"

    def __init__(self, cfg: JSAConfig, *, audio_in_bins: int = 64) -> None:
        super().__init__(cfg.tau)
        self.cfg = cfg
        d = cfg.dim
        self.visual, v_ch, info, self.audio, a_ch = build_trunks(cfg, audio_in_bins=audio_in_bins)
        self.visual_head = nn.Conv2d(v_ch, d, kernel_size=1)
        self.audio_head = nn.Conv2d(a_ch, d, kernel_size=1)
        init_scratch(self.visual_head)
        init_scratch(self.audio_head)
        self.slots_init = nn.Parameter(torch.randn(cfg.num_slots, d))  # shared by both modalities
        self.mask_token_v = nn.Parameter(torch.randn(d))
        self.mask_token_a = nn.Parameter(torch.randn(d))
        self.slot_v, self.slot_a = _SlotBranch(d), _SlotBranch(d)
        self.decoder_v = _BroadcastDecoder(d, cfg.max_positions)
        self.decoder_a = _BroadcastDecoder(d, cfg.max_positions)
        self.weights_info = {"visual": info.to_json()}
        self._image_aug, self._spec_aug = cfg.image_augmentation(), cfg.spec_augmentation()

    # -- tokens ---------------------------------------------------------------------------------------------

    def visual_tokens(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.visual_head(self.visual(image))
        return grid_tokens(x), (x.shape[2], x.shape[3])

    def audio_tokens(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.audio_head(audio_feature_map(self.audio, audio)).amax(dim=2)  # max over frequency → (B, D, T)
        return x.transpose(1, 2)

    def _mask(self, tokens: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cfg.mask_prob <= 0:
            return tokens
        hit = torch.rand(tokens.shape[:2], device=tokens.device) < self.cfg.mask_prob
        return torch.where(hit.unsqueeze(-1), token.to(tokens.dtype), tokens)

    def _slots(self, v_tok: torch.Tensor, a_tok: torch.Tensor) -> dict[str, torch.Tensor]:
        """Slot attention of both modalities (float32): slots, last queries, keys, last self-attentions."""
        init = self.slots_init.unsqueeze(0).expand(v_tok.shape[0], -1, -1)
        k_v, val_v = self.slot_v.keys_values(v_tok)
        k_a, val_a = self.slot_a.keys_values(a_tok)
        s_v, q_v, ia_vv = self.slot_v.iterate(init, k_v, val_v, self.cfg.slot_iters)
        s_a, q_a, ia_aa = self.slot_a.iterate(init, k_a, val_a, self.cfg.slot_iters)
        return {"s_v": s_v, "s_a": s_a, "q_v": q_v, "q_a": q_a, "k_v": k_v, "k_a": k_a,
                "ia_vv": ia_vv, "ia_aa": ia_aa}  # fmt: skip

    @staticmethod
    def _fp32(device: torch.device):
        if device.type in ("cuda", "cpu"):
            return torch.autocast(device.type, enabled=False)
        return contextlib.nullcontext()

    # -- contract ---------------------------------------------------------------------------------------------

    def augment(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training augmentation of the inputs (identity in eval mode or with `augment` off)."""
        if not self.training:
            return image, audio
        return augment_image(image, self._image_aug), spec_augment(audio, self._spec_aug)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        image, audio = self.augment(image, audio)
        v_tok, (h, w) = self.visual_tokens(image)
        a_tok = self.audio_tokens(audio)
        with self._fp32(v_tok.device):
            v_tok, a_tok = v_tok.float(), a_tok.float()
            o = self._slots(self._mask(v_tok, self.mask_token_v), self._mask(a_tok, self.mask_token_a))
            scale = self.slot_v.scale
            ca_av = slot_attention_weights(o["q_a"], o["k_v"], scale)  # audio queries over visual keys
            ca_va = slot_attention_weights(o["q_v"], o["k_a"], scale)
            att = ((ca_av[:, 0] - o["ia_vv"][:, 0].detach()).square().mean(dim=1)
                   + (ca_va[:, 0] - o["ia_aa"][:, 0].detach()).square().mean(dim=1))  # fmt: skip
            recon_v = self.decoder_v(o["s_v"], h, w)
            recon_a = self.decoder_a(o["s_a"], 1, a_tok.shape[1])
            recon = ((recon_v - v_tok.detach()).square().mean(dim=(1, 2))
                     + (recon_a - a_tok.detach()).square().mean(dim=(1, 2)))  # fmt: skip
            s_v, s_a = F.normalize(o["s_v"], dim=-1), F.normalize(o["s_a"], dim=-1)
            div = _pairwise_div(s_v) + _pairwise_div(s_a)
        return {"sv": s_v[:, 0], "sa": s_a[:, 0], "div": div, "att": att, "recon": recon}

    def loss(self, emb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sv, sa = emb["sv"].float(), emb["sa"].float()
        masked = reciprocal_mask(sv.detach(), sa.detach(), self.cfg.reciprocal_k)
        logits = (sv @ sa.t() / self.tau).masked_fill(masked, -math.inf)
        info = cross_entropy_rows(logits) + cross_entropy_cols(logits)
        div, att, recon = emb["div"].float().mean(), emb["att"].float().mean(), emb["recon"].float().mean()
        total = info + self.cfg.w_recon * recon + self.cfg.w_div * div + self.cfg.w_att * att
        with torch.no_grad():
            acc = diagonal_accuracy(logits)
        return total, {"loss_info": info.detach(), "loss_recon": recon.detach(), "loss_div": div.detach(),
                       "loss_att": att.detach(), "masked_frac": masked.float().mean(), "acc_i2a": acc}  # fmt: skip

    def embeddings(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target-slot embeddings (ŝ_v⁰, ŝ_a⁰): L2-normalised slot 0 of each modality, unmasked (eval mode)."""
        return self.localize_and_embed(image, audio)[1]

    @torch.no_grad()
    def localize_and_embed(self, image: torch.Tensor, audio: torch.Tensor, *, embed: bool = True
                           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The map and (with `embed`) the target-slot embeddings, from one pass of encoders and slot attention."""
        v_tok, (h, w) = self.visual_tokens(image)
        a_tok = self.audio_tokens(audio)
        with self._fp32(v_tok.device):
            o = self._slots(v_tok.float(), a_tok.float())  # no masking: eval mode
            scale = self.slot_v.scale * self.cfg.infer_sharpening
            ia = slot_attention_weights(o["q_v"], o["k_v"], scale)[:, 0].reshape(-1, h, w)
            ca = slot_attention_weights(o["q_a"], o["k_v"], scale)[:, 0].reshape(-1, h, w)
            grid = self.cfg.alpha * minmax(ca) + (1.0 - self.cfg.alpha) * minmax(ia)
            if not embed:
                return grid, None
            return grid, (F.normalize(o["s_v"][:, 0], dim=-1), F.normalize(o["s_a"][:, 0], dim=-1))


def build_jsa(cfg: JSAConfig, **kwargs) -> JSA:
    return JSA(cfg, **kwargs)


ENTRY = MethodEntry("jsa", JSAConfig, build_jsa, "JSA: joint slot attention, k-reciprocal InfoNCE, IQR map")
