"""From grid score maps to submitted 224×224 maps (baselines spec §1, §2.4).

* `cosine_map`: ⟨v(p), a⟩ per grid cell of L2-normalised visual and audio features.
* `upsample`: grid → 224×224, bicubic, align_corners=False, float32.
* `fixed_range`: Â = (τ·A + 1) / 2 ∈ [0, 1] for cosine maps A = cos/τ (bicubic may overshoot slightly at edges).
* `minmax`: per-image (x − min) / (max − min) (0 for constant maps).
* `combine_ogl_classic`: minmax(0.4·minmax(A) + 0.6·minmax(O))     (EZ-VSL rule, classic protocol)
* `combine_ogl_extended`: 0.9·Â + 0.1·O / 2.5                       (SLAVC fixed-range rule, extended protocol)
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["GRID", "cosine_map", "upsample", "fixed_range", "minmax", "combine_ogl_classic", "combine_ogl_extended"]

GRID = 224


def upsample(maps: torch.Tensor, size: int = GRID) -> torch.Tensor:
    """(B, h, w) → (B, size, size) by bicubic interpolation, align_corners=False, float32."""
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, h, w), got {tuple(maps.shape)}")
    return F.interpolate(maps.float().unsqueeze(1), size=(size, size), mode="bicubic", align_corners=False).squeeze(1)


def cosine_map(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """⟨v_n(p), a_n⟩ at every location p of visual (B, D, h, w) and audio (B, D) features → (B, h, w), float32."""
    return torch.einsum("ndhw,nd->nhw", v.float(), a.float())


def fixed_range(maps: torch.Tensor, tau: float) -> torch.Tensor:
    """Â = (τ·A + 1) / 2 for cosine logit maps A."""
    return (maps * tau + 1.0) / 2.0


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation of (B, H, W) maps; constant maps become 0."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.view_as(maps)


def combine_ogl_classic(av: torch.Tensor, ogl: torch.Tensor) -> torch.Tensor:
    """Classic `+OGL`: minmax(0.4·minmax(A) + 0.6·minmax(O)) (A and O at 224×224)."""
    return minmax(0.4 * minmax(av) + 0.6 * minmax(ogl))


def combine_ogl_extended(av_fixed: torch.Tensor, ogl: torch.Tensor) -> torch.Tensor:
    """Extended `+OGL`: 0.9·Â + 0.1·O / 2.5 (Â fixed-range, O raw; both at 224×224)."""
    return 0.9 * av_fixed + 0.1 * ogl / 2.5
