"""Model inputs from decoded media: the §2.1 log spectrogram, the protocol audio window, image transforms.

Pure functions, no file access. Audio features are torch (batched, run on the training device); image
transforms are Pillow/numpy (run in the data-loader workers).

* `power_spectrogram` is `scipy.signal.spectrogram(x, 16000, nperseg=512, noverlap=274)` (baselines spec §2.1):
  frames of 512 samples at hop 238, each minus its mean, times a periodic Tukey window (α = 0.25), one-sided
  PSD scaling `c_f |rfft|² / (fs Σw²)`.
* `log_spectrogram` = `log(P + 1e-7) / 12`, shape (B, 1, 257, 200) for 3 s at 16 kHz.
* `pooled_log_spectrogram` (CPU preset, §3.8): the same P summed over groups of frequency bins and averaged over
  groups of frames before the log, e.g. 64 × 100 (125 Hz bands, 30 ms frames).
* `stft160_log_spectrogram` (JSA, §3.6): |STFT|² with n_fft = win = 512, hop 160, centred (reflect pad), periodic
  Hann, then `log(P + 1e-7) / 12`; (B, 1, 257, 501) for 5 s.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "SAMPLE_RATE", "IMAGENET_MEAN", "IMAGENET_STD", "tukey_window", "power_spectrogram", "log_spectrogram",
    "pooled_log_spectrogram", "stft160_log_spectrogram", "protocol_window", "squash_image", "resize_short_side",
    "random_crop_flip", "normalize_image", "to_chw_uint8", "AudioFrontend",
]

SAMPLE_RATE = 16_000
NPERSEG = 512
NOVERLAP = 274
TUKEY_ALPHA = 0.25
LOG_EPS = 1e-7
LOG_SCALE = 12.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------ audio


def tukey_window(n: int, alpha: float = TUKEY_ALPHA, *, periodic: bool = True) -> np.ndarray:
    """Tukey (tapered cosine) window of `n` points, float64; `periodic` = the symmetric n+1 window minus its last
    point (scipy's `get_window(('tukey', α), n)`)."""
    m = n + 1 if periodic else n
    if m == 1:
        return np.ones(1)
    k = np.arange(m, dtype=np.float64)
    width = int(math.floor(alpha * (m - 1) / 2.0))
    w = np.ones(m)
    if alpha > 0:
        head = k[: width + 1]
        w[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * head / (alpha * (m - 1)))))
        tail = k[m - width - 1 :]
        w[m - width - 1 :] = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * tail / (alpha * (m - 1)))))
    return w[:n] if periodic else w


_WINDOW_CACHE: dict[tuple, torch.Tensor] = {}


def _window(n: int, device: torch.device) -> torch.Tensor:
    key = (n, str(device))
    if key not in _WINDOW_CACHE:
        _WINDOW_CACHE[key] = torch.from_numpy(tukey_window(n)).to(device=device, dtype=torch.float32)
    return _WINDOW_CACHE[key]


def power_spectrogram(
    wave: torch.Tensor, *, sample_rate: int = SAMPLE_RATE, nperseg: int = NPERSEG, noverlap: int = NOVERLAP
) -> torch.Tensor:
    """One-sided PSD of (B, T) float waveforms → (B, nperseg // 2 + 1, frames), float32 (scipy's default
    `spectrogram`: constant detrend per frame, periodic Tukey 0.25 window, density scaling)."""
    if wave.dim() != 2:
        raise ValueError(f"wave must be (B, T), got shape {tuple(wave.shape)}")
    wave = wave.float()
    hop = nperseg - noverlap
    frames = wave.unfold(-1, nperseg, hop)  # (B, F, nperseg)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    window = _window(nperseg, wave.device)
    spec = torch.fft.rfft(frames * window, dim=-1)
    power = spec.real.square() + spec.imag.square()
    scale = torch.full((power.shape[-1],), 2.0, device=wave.device)
    scale[0] = 1.0
    if nperseg % 2 == 0:
        scale[-1] = 1.0
    power = power * (scale / (sample_rate * window.square().sum()))
    return power.transpose(1, 2).contiguous()


def log_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """§2.1 network input: `log(P + 1e-7) / 12`, (B, 1, 257, frames)."""
    return (torch.log(power_spectrogram(wave) + LOG_EPS) / LOG_SCALE).unsqueeze(1)


def pooled_log_spectrogram(wave: torch.Tensor, freq_bins: int = 64, time_frames: int = 100) -> torch.Tensor:
    """CPU-preset input: §2.1 power summed over `256 // freq_bins` adjacent bins (bins 0…255; the Nyquist bin is
    dropped) and averaged over adjacent frames down to `time_frames`, then `log(· + 1e-7) / 12`; (B, F, T)."""
    power = power_spectrogram(wave)[:, : NPERSEG // 2]  # (B, 256, frames)
    b, nf, nt = power.shape
    if nf % freq_bins:
        raise ValueError(f"freq_bins must divide {nf}, got {freq_bins}")
    power = power.reshape(b, freq_bins, nf // freq_bins, nt).sum(dim=2)
    power = torch.nn.functional.adaptive_avg_pool1d(power, time_frames)
    return torch.log(power + LOG_EPS) / LOG_SCALE


def stft160_log_spectrogram(wave: torch.Tensor, n_fft: int = 512, hop: int = 160) -> torch.Tensor:
    """JSA input (§3.6): `log(|STFT|² + 1e-7) / 12` with a periodic Hann window of n_fft, centred reflect
    padding; (B, 1, n_fft // 2 + 1, 1 + T // hop)."""
    if wave.dim() != 2:
        raise ValueError(f"wave must be (B, T), got shape {tuple(wave.shape)}")
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return (torch.log(power + LOG_EPS) / LOG_SCALE).unsqueeze(1)


def protocol_window(
    pcm: np.ndarray,
    stored_window: Sequence[float],
    *,
    centre: float,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Cut the protocol window [centre − s/2, centre + s/2) from a stored clip (data spec §3), float32 = s16/32768.

    `stored_window` is the clip-relative [start, end) of `pcm`. If fewer samples exist than the window needs, the
    available part is tiled from its start and truncated to the exact length (reference loader behaviour).
    """
    n = int(round(seconds * sample_rate))
    offset = int(round((centre - seconds / 2.0 - float(stored_window[0])) * sample_rate))
    if offset < 0:
        raise ValueError(f"the protocol window starts {-offset} samples before the stored window {list(stored_window)}")
    x = np.asarray(pcm)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    else:
        x = x.astype(np.float32, copy=False)
    part = x[offset : offset + n]
    if part.size == 0:
        part = x
    if part.size == 0:
        raise ValueError("empty audio")
    if part.size < n:
        part = np.tile(part, -(-n // part.size))[:n]
    return np.ascontiguousarray(part)


# ------------------------------------------------------------------------------------------------ image


def squash_image(img, size: int = 224) -> np.ndarray:
    """Evaluation transform (data spec §3): Pillow RGB → `resize((size, size), BICUBIC)` (aspect not kept);
    returns HWC uint8."""
    from PIL import Image

    return np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC))


def resize_short_side(img, short: int) -> np.ndarray:
    """Training pre-crop step (§2.1): resize so the short side is `short` (bicubic, aspect kept); HWC uint8."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        size = (short, max(short, int(round(h * short / w))))
    else:
        size = (max(short, int(round(w * short / h))), short)
    return np.asarray(img.resize(size, Image.BICUBIC))


def random_crop_flip(arr: np.ndarray, size: int, rng: np.random.Generator, flip_p: float = 0.5) -> np.ndarray:
    """Random `size`×`size` crop of an HWC array, then a horizontal flip with probability `flip_p`."""
    h, w = arr.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {w}x{h}")
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    out = arr[y : y + size, x : x + size]
    if rng.random() < flip_p:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def to_chw_uint8(arr: np.ndarray) -> torch.Tensor:
    """HWC uint8 array → CHW uint8 tensor (normalisation happens batched on the device)."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def normalize_image(batch: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 → float32 ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


# ------------------------------------------------------------------------------------------- front-end


class AudioFrontend:
    """Waveform window(s) → network input: `spectrogram` (1 × 257 × frames, §2.1), `pooled` (F × T, §3.8) or
    `stft160` (1 × 257 × frames, JSA §3.6).

    Picklable (runs in data-loader workers); accepts a 1-D numpy/torch waveform or a (B, T) batch.
    """

    def __init__(self, kind: str = "spectrogram", freq_bins: int = 64, time_frames: int = 100) -> None:
        if kind not in ("spectrogram", "pooled", "stft160"):
            raise ValueError(f"unknown audio front-end {kind!r}")
        self.kind, self.freq_bins, self.time_frames = kind, int(freq_bins), int(time_frames)

    def __call__(self, wave) -> torch.Tensor:
        x = torch.as_tensor(wave, dtype=torch.float32)
        single = x.dim() == 1
        if single:
            x = x.unsqueeze(0)
        if self.kind == "stft160":
            out = stft160_log_spectrogram(x)
        else:
            out = log_spectrogram(x) if self.kind == "spectrogram" else pooled_log_spectrogram(
                x, self.freq_bins, self.time_frames
            )
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"AudioFrontend({self.kind!r}, freq_bins={self.freq_bins}, time_frames={self.time_frames})"
