"""Center Prior (baselines spec §3.1): an image-independent isotropic map peaked at the frame centre."""

from __future__ import annotations

import numpy as np

GRID = 224


def center_prior_map(size: int = GRID) -> np.ndarray:
    """C(y, x) = −((x − c)² + (y − c)²) with c = (size − 1) / 2 (111.5 at 224), float32."""
    centre = (size - 1) / 2.0
    coords = np.arange(size, dtype=np.float64) - centre
    return (-(coords[None, :] ** 2 + coords[:, None] ** 2)).astype(np.float32)
