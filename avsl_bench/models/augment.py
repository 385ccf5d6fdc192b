"""Batched training augmentations on tensors, applied in a model's `forward` while it is training.

Two transforms, each configured by a small frozen dataclass (strengths and probabilities; recipes set or disable
them through the method's config):

* `augment_image(image, ImageAugment)`: ImageNet-normalised float images (B, 3, H, W) are mapped back to RGB in
  [0, 1] (inverse of `features.normalize_image`), then, each with its probability per sample:
  GaussianBlur (kernel k, σ ~ U[σ_lo, σ_hi], reflect padding, as torchvision) → ColorJitter (brightness,
  contrast, saturation factors ~ U[max(0, 1 − s), 1 + s], hue shift ~ U[−h, h]; the ops in a random order per
  sample as torchvision, or in that fixed order) → grayscale (ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B,
  replicated to 3 channels, as Pillow's `convert("L")`); clipped to [0, 1] and normalised again. Colour ops are
  clipped after each op (torchvision) or only at the end (`clip = "end"`). Crop, resize and flip stay in the data
  pipeline (`features.random_crop_flip`); flip commutes with every op here.
* `spec_augment(spec, SpecAugment)`: FNAC's SpecAugment (baselines spec §3.5) on a log spectrogram (B, F, T) or
  (B, 1, F, T) (frequency = axis −2, time = axis −1, as every `features.AudioFrontend`): one frequency band and one
  time band, widths uniform in {0, …, max_width}, set to `fill` (0; the same before or after the /12 scaling).
  Upstream draws the frequency-mask start from [0, 200) and the time-mask start from [0, 257) (its axes swapped,
  kept for fidelity). With `clamp_starts` the ranges are cut to the axis lengths, [0, min(200, F)) and
  [0, min(257, T)): a no-op on JSA's 257 × 501 input, [0, 64) and [0, 100) on the CPU preset's pooled 64 × 100
  (without the clamp most of its masks would start outside the axes). A band is cut off at the axis end.

Random numbers come from torch's global RNG (the generator of the input's device; the training loop seeds it),
drawn per sample, in a fixed order: blur (apply flags, σ), jitter (apply flags, op order, then one factor per
active op in the order brightness, contrast, saturation, hue), grayscale flags; spectrogram: frequency width,
frequency start, time width, time start, apply flags. A transform with probability 0 (or strength 0) draws
nothing and a probability of 1 draws no apply flags. Computation runs in float32 with autocast off; the output
has the input's dtype and shape.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F

from .. import features

__all__ = [
    "ImageAugment", "SpecAugment", "augment_image", "spec_augment", "gaussian_kernel1d", "gaussian_blur", "luma",
    "grayscale", "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "spec_mask",
]

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


@dataclass(frozen=True)
class ImageAugment:
    """Image augmentation: blur, colour jitter and grayscale, each applied per sample with its probability.
    The defaults change nothing (every probability 0); `JSAConfig` sets JSA's values (§3.6)."""

    blur_p: float = 0.0
    blur_kernel: int = 5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    jitter_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    jitter_order: str = "random"  # random (per sample, torchvision) | fixed (brightness, contrast, saturation, hue)
    clip: str = "each"  # each: clip to [0, 1] after every colour op (torchvision) | end: once, at the end
    grayscale_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("blur_p", "jitter_p", "grayscale_p"):
            _check_p(name, getattr(self, name))
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd integer, got {self.blur_kernel}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"blur_sigma must be (lo, hi) with 0 < lo ≤ hi, got {self.blur_sigma}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} strength must be ≥ 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue strength must be in [0, 0.5], got {self.hue}")
        if self.jitter_order not in ("random", "fixed"):
            raise ValueError(f"jitter_order must be 'random' or 'fixed', got {self.jitter_order!r}")
        if self.clip not in ("each", "end"):
            raise ValueError(f"clip must be 'each' or 'end', got {self.clip!r}")

    @property
    def strengths(self) -> tuple[float, float, float, float]:
        return (self.brightness, self.contrast, self.saturation, self.hue)

    @property
    def active(self) -> bool:
        """False when the augmentation can change nothing (the input is returned as it is)."""
        return self.blur_p > 0 or (self.jitter_p > 0 and any(self.strengths)) or self.grayscale_p > 0


@dataclass(frozen=True)
class SpecAugment:
    """FNAC SpecAugment (§3.5): one frequency and one time mask per sample, applied with probability `p`."""

    p: float = 1.0
    max_width: int = 9  # widths uniform in {0, …, max_width}
    freq_start: int = 200  # upstream: frequency-mask start in [0, 200)
    time_start: int = 257  # upstream: time-mask start in [0, 257)
    clamp_starts: bool = True  # start ranges cut to the axis lengths
    fill: float = 0.0

    def __post_init__(self) -> None:
        _check_p("p", self.p)
        if self.max_width < 0 or self.freq_start < 1 or self.time_start < 1:
            raise ValueError("max_width ≥ 0, freq_start ≥ 1 and time_start ≥ 1 required, got "
                             f"{self.max_width}, {self.freq_start}, {self.time_start}")

    @property
    def active(self) -> bool:
        return self.p > 0 and self.max_width > 0


# -------------------------------------------------------------------------------------- pure ops (per sample)


def gaussian_kernel1d(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) σ → (B, size) normalised Gaussian kernels exp(−x²/2σ²), x = −(size−1)/2 … (size−1)/2."""
    half = (size - 1) / 2.0
    x = torch.linspace(-half, half, size, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma.float().view(-1, 1)).square())
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int = 5) -> torch.Tensor:
    """Blur (B, C, H, W) with a separable Gaussian of per-sample σ (B,), reflect padding (torchvision's)."""
    n, c, h, w = x.shape
    k = gaussian_kernel1d(sigma, kernel_size).to(x.dtype).repeat_interleave(c, dim=0)  # (B·C, K)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of RGB (B, 3, H, W) → (B, 1, H, W)."""
    return (x * torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """RGB → its luma in all three channels."""
    return luma(x).expand_as(x)


def _per_sample(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x · f per sample (unclipped)."""
    return x * _per_sample(f)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean luma: (x − m)·f + m per sample (unclipped)."""
    m = luma(x).mean(dim=(2, 3), keepdim=True)
    return (x - m) * _per_sample(f) + m


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the pixel's luma: (x − g)·f + g per sample (unclipped)."""
    g = luma(x)
    return (x - g) * _per_sample(f) + g


def adjust_hue(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by h (fraction of a turn, per sample); value (max) and chroma (max − min) are kept, so
    the channels stay within each pixel's [min, max]."""
    r, g, b = x.unbind(1)
    v, _ = x.max(dim=1)
    chroma = v - x.min(dim=1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(v == r, torch.remainder((g - b) / safe, 6.0),
                      torch.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))  # fmt: skip
    hue = torch.remainder(hue + 6.0 * h.view(-1, 1, 1), 6.0)  # sextants, [0, 6)
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B of hsv → rgb: v − c·clamp(min(k, 4 − k), 0, 1), k = (n + hue) mod 6
        k = torch.remainder(n + hue, 6.0)
        out.append(v - chroma * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


_JITTER_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation,
    "hue": adjust_hue,
}


# -------------------------------------------------------------------------------------------- random draws


def _flags(n: int, p: float, device: torch.device) -> torch.Tensor | None:
    """Per-sample apply flags; None = every sample (p ≥ 1, nothing drawn)."""
    return None if p >= 1.0 else torch.rand(n, device=device) < p


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


def _factor(n: int, strength: float, hue: bool, device: torch.device) -> torch.Tensor:
    """Hue: U[−s, s]; others: U[1 − s, 1 + s] (s ≤ 1), U[0, 1 + s] (s > 1), as torchvision's ColorJitter."""
    u = torch.rand(n, device=device)
    if hue or strength <= 1.0:
        return (0.0 if hue else 1.0) + strength * (2.0 * u - 1.0)
    return (1.0 + strength) * u


def _apply(x: torch.Tensor, rows: torch.Tensor | None, fn, *params: torch.Tensor) -> torch.Tensor:
    """fn(x, *params) on the rows flagged (None = all), the other rows unchanged."""
    if rows is None:
        return fn(x, *params)
    idx = rows.nonzero().flatten()
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = fn(x[idx], *(p[idx] for p in params))
    return out


def _clipped(fn):
    return lambda x, f: fn(x, f).clamp(0.0, 1.0)


def _fp32(device: torch.device):
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------ pipelines


def augment_image(image: torch.Tensor, cfg: ImageAugment) -> torch.Tensor:
    """Blur → colour jitter → grayscale of ImageNet-normalised (B, 3, H, W) images, per sample (module doc)."""
    if not cfg.active:
        return image
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, H, W), got shape {tuple(image.shape)}")
    n, dev = image.shape[0], image.device
    channels_last = image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
    with _fp32(dev):
        mean = torch.tensor(features.IMAGENET_MEAN, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(features.IMAGENET_STD, device=dev).view(1, 3, 1, 1)
        x = image.float() * std + mean
        if cfg.blur_p > 0:
            rows = _flags(n, cfg.blur_p, dev)
            sigma = _uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], dev)
            x = _apply(x, rows, lambda t, s: gaussian_blur(t, s, cfg.blur_kernel), sigma)
        ops = [name for name, s in zip(JITTER_OPS, cfg.strengths) if s > 0] if cfg.jitter_p > 0 else []
        if ops:
            rows = _flags(n, cfg.jitter_p, dev)
            order = None
            if cfg.jitter_order == "random" and len(ops) > 1:
                order = torch.rand(n, len(ops), device=dev).argsort(dim=1)  # a uniform permutation per sample
            factors = [_factor(n, getattr(cfg, name), name == "hue", dev) for name in ops]
            for step in range(len(ops)):
                for j, name in enumerate(ops):
                    if order is None:
                        if j != step:
                            continue
                        sel = rows
                    else:
                        sel = order[:, step] == j
                        sel = sel if rows is None else sel & rows
                    fn = _JITTER_FNS[name] if cfg.clip == "end" else _clipped(_JITTER_FNS[name])
                    x = _apply(x, sel, fn, factors[j])
        if cfg.grayscale_p > 0:
            x = _apply(x, _flags(n, cfg.grayscale_p, dev), grayscale)
        out = ((x.clamp(0.0, 1.0) - mean) / std).to(image.dtype)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def spec_mask(n: int, n_freq: int, n_time: int, cfg: SpecAugment, device: torch.device | str = "cpu"
              ) -> torch.Tensor:
    """Draw the (n, F, T) boolean SpecAugment mask: True in sample i's frequency band or time band (module doc)."""
    dev = torch.device(device)
    f_range = min(cfg.freq_start, n_freq) if cfg.clamp_starts else cfg.freq_start
    t_range = min(cfg.time_start, n_time) if cfg.clamp_starts else cfg.time_start
    f_width = torch.randint(0, cfg.max_width + 1, (n,), device=dev)
    f_start = torch.randint(0, f_range, (n,), device=dev)
    t_width = torch.randint(0, cfg.max_width + 1, (n,), device=dev)
    t_start = torch.randint(0, t_range, (n,), device=dev)
    fi = torch.arange(n_freq, device=dev).view(1, -1)
    ti = torch.arange(n_time, device=dev).view(1, -1)
    in_f = (fi >= f_start.view(-1, 1)) & (fi < (f_start + f_width).view(-1, 1))  # (n, F)
    in_t = (ti >= t_start.view(-1, 1)) & (ti < (t_start + t_width).view(-1, 1))  # (n, T)
    mask = in_f.unsqueeze(2) | in_t.unsqueeze(1)
    rows = _flags(n, cfg.p, dev)
    return mask if rows is None else mask & rows.view(-1, 1, 1)


def spec_augment(spec: torch.Tensor, cfg: SpecAugment) -> torch.Tensor:
    """FNAC SpecAugment of log spectrograms (B, F, T) or (B, 1, F, T); masked cells set to `cfg.fill`."""
    if not cfg.active:
        return spec
    if spec.dim() not in (3, 4) or (spec.dim() == 4 and spec.shape[1] != 1):
        raise ValueError(f"spectrogram must be (B, F, T) or (B, 1, F, T), got shape {tuple(spec.shape)}")
    n, n_freq, n_time = spec.shape[0], spec.shape[-2], spec.shape[-1]
    mask = spec_mask(n, n_freq, n_time, cfg, spec.device)
    return spec.masked_fill(mask.view(spec.shape), cfg.fill)
