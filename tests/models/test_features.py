"""The §2.1 spectrogram against an independent numpy implementation of scipy's formula (or scipy itself)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsl_bench import features


def _tukey_reference(m: int, alpha: float) -> np.ndarray:
    """Textbook symmetric Tukey window: cosine tapers over α(m−1)/2 samples at each end."""
    n = np.arange(m, dtype=np.float64)
    edge = alpha * (m - 1) / 2.0
    w = np.ones(m)
    left = n < edge
    w[left] = 0.5 * (1 - np.cos(np.pi * n[left] / edge))
    right = n > (m - 1) - edge
    w[right] = 0.5 * (1 - np.cos(np.pi * ((m - 1) - n[right]) / edge))
    return w


def _spectrogram_reference(x: np.ndarray, fs=16000, nperseg=512, noverlap=274) -> np.ndarray:
    """scipy.signal.spectrogram defaults re-derived: periodic Tukey 0.25, constant detrend, one-sided density."""
    try:
        from scipy.signal import spectrogram
    except ImportError:
        win = _tukey_reference(nperseg + 1, 0.25)[:nperseg]
        hop = nperseg - noverlap
        n_frames = (len(x) - noverlap) // hop
        out = np.empty((nperseg // 2 + 1, n_frames))
        for t in range(n_frames):
            seg = x[t * hop : t * hop + nperseg].astype(np.float64)
            seg = (seg - seg.mean()) * win
            p = np.abs(np.fft.rfft(seg)) ** 2 / (fs * (win**2).sum())
            p[1:-1] *= 2
            out[:, t] = p
        return out
    return spectrogram(x, fs, nperseg=nperseg, noverlap=noverlap)[2]


def test_tukey_window_matches_reference():
    np.testing.assert_allclose(features.tukey_window(512), _tukey_reference(513, 0.25)[:512], atol=1e-12)
    np.testing.assert_allclose(features.tukey_window(64, periodic=False), _tukey_reference(64, 0.25), atol=1e-12)


def test_spectrogram_matches_scipy_formula():
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(48000) + 0.01).astype(np.float32)
    ref = _spectrogram_reference(x.astype(np.float64))
    got = features.power_spectrogram(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == ref.shape == (257, 200)
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=1e-9)
    log = features.log_spectrogram(torch.from_numpy(x)[None])
    assert log.shape == (1, 1, 257, 200)
    np.testing.assert_allclose(log[0, 0].numpy(), np.log(ref + 1e-7) / 12, atol=2e-4)


def test_pooled_spectrogram_shape_and_value():
    x = torch.randn(2, 48000) * 0.1
    pooled = features.pooled_log_spectrogram(x, 64, 100)
    assert pooled.shape == (2, 64, 100)
    power = features.power_spectrogram(x)[:, :256]
    expected = torch.log(power.reshape(2, 64, 4, 200).sum(2).reshape(2, 64, 100, 2).mean(-1) + 1e-7) / 12
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "window,centre,seconds,n_stored,expected_start",
    [([0.0, 10.0], 5.0, 3.0, 160000, 56000), ([3.5, 6.5], 5.0, 3.0, 48000, 0), ([0.0, 3.0], 1.5, 3.0, 48000, 0),
     ([0.0, 10.0], 5.0, 5.0, 160000, 40000)],
)
def test_protocol_window(window, centre, seconds, n_stored, expected_start):
    pcm = (np.arange(n_stored) % 30000).astype(np.int16)
    out = features.protocol_window(pcm, window, centre=centre, seconds=seconds)
    n = int(seconds * 16000)
    assert out.dtype == np.float32 and out.shape == (n,)
    np.testing.assert_array_equal(out, pcm[expected_start : expected_start + n].astype(np.float32) / 32768)


def test_protocol_window_tiles_short_clips():
    pcm = np.arange(1, 60001, dtype=np.int16) % 1000
    out = features.protocol_window(pcm, [0.0, 10.0], centre=5.0, seconds=3.0)  # only 4,000 samples after 56,000
    avail = pcm[56000:].astype(np.float32) / 32768
    np.testing.assert_array_equal(out, np.tile(avail, 12)[:48000])


def test_image_transforms():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (192, 256, 3), dtype=np.uint8))
    sq = features.squash_image(img, 224)
    assert sq.shape == (224, 224, 3)
    np.testing.assert_array_equal(sq, np.asarray(img.resize((224, 224), Image.BICUBIC)))
    pre = features.resize_short_side(img, 246)
    assert pre.shape == (246, 328, 3)
    a = features.random_crop_flip(pre, 224, np.random.default_rng(1))
    b = features.random_crop_flip(pre, 224, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    norm = features.normalize_image(features.to_chw_uint8(sq)[None])
    assert norm.shape == (1, 3, 224, 224) and norm.dtype == torch.float32
