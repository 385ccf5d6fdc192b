"""Tensor-level training augmentations (`models.augment`): each op against an independent simple implementation
(Pillow's luma formula, colorsys, a hand-built Gaussian, torchvision where it agrees), probabilities 0 / 1 / ½,
the documented draw order, SpecAugment bands, determinism, shapes and dtypes."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from avsl_bench import features
from avsl_bench.models.augment import (ImageAugment, SpecAugment, adjust_brightness, adjust_contrast, adjust_hue,
                                       adjust_saturation, augment_image, gaussian_blur, gaussian_kernel1d, grayscale,
                                       spec_augment, spec_mask)

MEAN = torch.tensor(features.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(features.IMAGENET_STD).view(1, 3, 1, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _rgb(n=4, size=8, seed=0) -> torch.Tensor:
    """Random RGB images in [0, 1] (as decoded uint8 / 255)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).float() / 255.0


def _normalised(rgb: torch.Tensor) -> torch.Tensor:
    return features.normalize_image((rgb * 255.0).round().to(torch.uint8))


def _denorm(image: torch.Tensor) -> torch.Tensor:
    return image.float() * STD + MEAN


# ------------------------------------------------------------------------------------------- single ops


def test_grayscale_is_itu_r_601_luma():
    x = _rgb()
    ref = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    out = grayscale(x)
    assert out.shape == x.shape
    for c in range(3):
        torch.testing.assert_close(out[:, c], ref)


def test_brightness_contrast_saturation_against_formulas():
    x = _rgb(3, 6, seed=1)
    f = torch.tensor([0.2, 1.0, 1.7])
    xn = x.numpy().astype(np.float64)
    lum = 0.299 * xn[:, 0] + 0.587 * xn[:, 1] + 0.114 * xn[:, 2]  # (n, H, W)
    for i, fi in enumerate(f.tolist()):
        np.testing.assert_allclose(adjust_brightness(x, f)[i].numpy(), xn[i] * fi, rtol=1e-6, atol=1e-6)
        m = lum[i].mean()
        np.testing.assert_allclose(adjust_contrast(x, f)[i].numpy(), m + fi * (xn[i] - m), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(adjust_saturation(x, f)[i].numpy(), lum[i] + fi * (xn[i] - lum[i]), rtol=1e-5,
                                   atol=1e-6)  # fmt: skip
    torch.testing.assert_close(adjust_contrast(x, torch.zeros(3))[:, 0], adjust_contrast(x, torch.zeros(3))[:, 2])


def test_colour_ops_agree_with_torchvision():
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    x = _rgb(3, 8, seed=2)
    for fn, tv in ((adjust_brightness, tvf.adjust_brightness), (adjust_contrast, tvf.adjust_contrast),
                   (adjust_saturation, tvf.adjust_saturation)):  # fmt: skip
        for f in (0.3, 1.6):
            ours = fn(x, torch.full((3,), f)).clamp(0, 1)
            torch.testing.assert_close(ours, tv(x, f), atol=2e-3, rtol=0)  # torchvision weights R by 0.2989
    for h in (-0.2, 0.13):
        torch.testing.assert_close(adjust_hue(x, torch.full((3,), h)), tvf.adjust_hue(x, h), atol=1e-5, rtol=0)


def test_hue_against_colorsys():
    x = _rgb(2, 5, seed=3)
    x[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey: hue undefined, stays grey
    x[0, :, 0, 1] = torch.tensor([1.0, 1.0, 0.0])  # ties in the maximum
    h = torch.tensor([0.2, -0.15])
    out = adjust_hue(x, h)
    for i in range(2):
        for yy in range(5):
            for xx in range(5):
                hh, s, v = colorsys.rgb_to_hsv(*x[i, :, yy, xx].tolist())
                ref = colorsys.hsv_to_rgb((hh + float(h[i])) % 1.0, s, v)
                np.testing.assert_allclose(out[i, :, yy, xx].numpy(), ref, atol=1e-5)
    torch.testing.assert_close(adjust_hue(x, torch.zeros(2)), x, atol=1e-6, rtol=0)


def test_blur_of_an_impulse_is_the_gaussian_kernel():
    sigma = torch.tensor([0.1, 0.7, 2.0])
    x = torch.zeros(3, 3, 11, 11)
    x[:, :, 5, 5] = 1.0
    out = gaussian_blur(x, sigma, 5)
    for i, s in enumerate(sigma.tolist()):
        k = np.array([math.exp(-(t * t) / (2 * s * s)) for t in range(-2, 3)])
        k /= k.sum()
        ref = np.zeros((11, 11))
        ref[3:8, 3:8] = np.outer(k, k)
        for c in range(3):
            np.testing.assert_allclose(out[i, c].numpy(), ref, atol=1e-7)
    torch.testing.assert_close(gaussian_kernel1d(sigma, 5).sum(1), torch.ones(3))
    torch.testing.assert_close(out.sum(dim=(2, 3)), torch.ones(3, 3))


def test_blur_agrees_with_torchvision_reflect_padding():
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    x = _rgb(2, 9, seed=4)
    sigma = torch.tensor([0.5, 1.8])
    out = gaussian_blur(x, sigma, 5)
    for i in range(2):
        ref = tvf.gaussian_blur(x[i : i + 1], [5, 5], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- image pipeline

JSA = ImageAugment(blur_p=0.8, blur_sigma=(0.1, 2.0), jitter_p=0.8, brightness=0.8, contrast=0.8, saturation=0.8,
                   hue=0.2, grayscale_p=0.2)  # fmt: skip


def test_probability_zero_is_identity_and_draws_nothing():
    image = _normalised(_rgb())
    none = ImageAugment(blur_p=0.0, jitter_p=0.0, brightness=0.5, grayscale_p=0.0)
    assert not none.active and not ImageAugment(jitter_p=1.0).active
    torch.manual_seed(0)
    assert augment_image(image, none) is image
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_probability_one_applies_to_every_sample():
    rgb = _rgb(6, 8, seed=5)
    image = _normalised(rgb)
    gray = _denorm(augment_image(image, ImageAugment(grayscale_p=1.0)))
    torch.testing.assert_close(gray, grayscale(rgb), atol=1e-5, rtol=0)
    torch.manual_seed(1)
    blurred = _denorm(augment_image(image, ImageAugment(blur_p=1.0, blur_sigma=(0.3, 1.5))))
    torch.manual_seed(1)
    sigma = 0.3 + 1.2 * torch.rand(6)  # p = 1 draws no flags: σ is the first draw
    torch.testing.assert_close(blurred, gaussian_blur(rgb, sigma, 5).clamp(0, 1), atol=1e-5, rtol=0)


def test_fixed_order_jitter_matches_manual_sequence():
    rgb = _rgb(5, 8, seed=6)
    cfg = ImageAugment(jitter_p=1.0, brightness=0.4, contrast=0.3, saturation=0.6, hue=0.1, jitter_order="fixed")
    torch.manual_seed(2)
    out = _denorm(augment_image(_normalised(rgb), cfg))
    torch.manual_seed(2)
    u = [torch.rand(5) for _ in range(4)]
    x = adjust_brightness(rgb, 1 + 0.4 * (2 * u[0] - 1)).clamp(0, 1)
    x = adjust_contrast(x, 1 + 0.3 * (2 * u[1] - 1)).clamp(0, 1)
    x = adjust_saturation(x, 1 + 0.6 * (2 * u[2] - 1)).clamp(0, 1)
    x = adjust_hue(x, 0.1 * (2 * u[3] - 1)).clamp(0, 1)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_random_order_is_a_permutation_per_sample():
    rgb = _rgb(32, 6, seed=7)
    cfg = ImageAugment(jitter_p=1.0, brightness=0.8, saturation=0.8)
    torch.manual_seed(3)
    out = _denorm(augment_image(_normalised(rgb), cfg))
    torch.manual_seed(3)
    order = torch.rand(32, 2).argsort(1)
    fb, fs = 1 + 0.8 * (2 * torch.rand(32) - 1), 1 + 0.8 * (2 * torch.rand(32) - 1)
    b_first = adjust_saturation(adjust_brightness(rgb, fb).clamp(0, 1), fs).clamp(0, 1)
    s_first = adjust_brightness(adjust_saturation(rgb, fs).clamp(0, 1), fb).clamp(0, 1)
    expect = torch.where((order[:, 0] == 0).view(-1, 1, 1, 1), b_first, s_first)
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=0)
    assert 0 < int((order[:, 0] == 0).sum()) < 32  # both orders occur
    assert (b_first - s_first).abs().amax() > 1e-3  # and they differ


def test_per_sample_probability():
    rgb = _rgb(400, 4, seed=8)
    rgb[:, 0] = 1.0  # strongly coloured: grayscale visibly changes every sample
    rgb[:, 1:] = 0.0
    torch.manual_seed(4)
    out = _denorm(augment_image(_normalised(rgb), ImageAugment(grayscale_p=0.5)))
    grey = (out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2)) < 1e-4
    assert 150 < int(grey.sum()) < 250
    torch.testing.assert_close(out[~grey], rgb[~grey], atol=1e-5, rtol=0)


def test_jsa_pipeline_determinism_range_shape_dtype():
    image = _normalised(_rgb(8, 16, seed=9))
    torch.manual_seed(5)
    a = augment_image(image, JSA)
    torch.manual_seed(5)
    b = augment_image(image, JSA)
    torch.manual_seed(6)
    c = augment_image(image, JSA)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == image.shape and a.dtype == torch.float32
    rgb = _denorm(a)
    assert float(rgb.min()) >= -1e-5 and float(rgb.max()) <= 1 + 1e-5
    half = augment_image(image.half(), JSA)
    assert half.dtype == torch.float16 and half.shape == image.shape and torch.isfinite(half).all()
    cl = augment_image(image.contiguous(memory_format=torch.channels_last), JSA)
    assert cl.is_contiguous(memory_format=torch.channels_last)


def test_image_config_validation():
    for bad in (dict(blur_p=1.5), dict(blur_kernel=4), dict(blur_sigma=(0.0, 1.0)), dict(hue=0.6),
                dict(brightness=-0.1), dict(jitter_order="shuffled"), dict(clip="never")):  # fmt: skip
        with pytest.raises(ValueError):
            ImageAugment(**bad)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        augment_image(torch.zeros(2, 1, 8, 8), JSA)


# ------------------------------------------------------------------------------------------- SpecAugment


def _bands(masked: torch.Tensor) -> tuple[list[int], list[int]]:
    """Rows (frequencies) and columns (times) that are entirely masked in a (F, T) boolean map."""
    return (masked.all(dim=1).nonzero().flatten().tolist(), masked.all(dim=0).nonzero().flatten().tolist())


@pytest.mark.parametrize("shape", [(16, 64, 100), (4, 1, 257, 501)])
def test_spec_augment_masks_exactly_the_drawn_bands(shape):
    g = torch.Generator().manual_seed(0)
    spec = torch.rand(shape, generator=g) + 0.5  # never 0 before masking
    cfg = SpecAugment()
    torch.manual_seed(7)
    out = spec_augment(spec, cfg)
    assert out.shape == spec.shape and out.dtype == spec.dtype
    n, n_f, n_t = shape[0], shape[-2], shape[-1]
    # the documented draws: frequency width, frequency start, time width, time start; ranges cut to the axes
    torch.manual_seed(7)
    fw, f0 = torch.randint(0, 10, (n,)), torch.randint(0, min(200, n_f), (n,))
    tw, t0 = torch.randint(0, 10, (n,)), torch.randint(0, min(257, n_t), (n,))
    for i in range(n):
        masked = (out[i].reshape(n_f, n_t) == 0)
        rows = list(range(int(f0[i]), min(n_f, int(f0[i] + fw[i]))))
        cols = list(range(int(t0[i]), min(n_t, int(t0[i] + tw[i]))))
        expect = torch.zeros(n_f, n_t, dtype=torch.bool)
        expect[rows, :] = True
        expect[:, cols] = True
        assert torch.equal(masked, expect)
        assert _bands(masked) == (rows, cols)
        assert len(rows) <= 9 and len(cols) <= 9
        kept = ~expect
        assert torch.equal(out[i].reshape(n_f, n_t)[kept], spec[i].reshape(n_f, n_t)[kept])


def test_spec_augment_widths_and_starts_cover_their_ranges():
    torch.manual_seed(8)
    mask = spec_mask(2000, 64, 100, SpecAugment())
    widths_f = mask.all(dim=2).sum(1)
    widths_t = mask.all(dim=1).sum(1)
    assert int(widths_f.max()) == 9 and int(widths_t.max()) == 9 and int(widths_f.min()) == 0
    starts_t = [int(r.nonzero()[0]) for r in mask.all(dim=1) if r.any()]
    assert max(starts_t) >= 90  # clamped range [0, 100) is used up to the end of the axis
    # upstream ranges unclamped: most frequency masks (start in [64, 200)) fall outside a 64-bin axis
    torch.manual_seed(8)
    free = spec_mask(2000, 64, 100, SpecAugment(clamp_starts=False))
    assert 0.55 < float((~free.all(dim=2).any(dim=1)).float().mean()) < 0.8


def test_spec_augment_probability_and_identity():
    spec = torch.rand(32, 64, 100) + 0.5
    assert spec_augment(spec, SpecAugment(p=0.0)) is spec
    assert spec_augment(spec, SpecAugment(max_width=0)) is spec
    torch.manual_seed(9)
    out = spec_augment(spec, SpecAugment(p=0.5))
    touched = (out == 0).flatten(1).any(1)
    assert 0 < int(touched.sum()) < 32
    half = spec_augment(spec.half(), SpecAugment())
    assert half.dtype == torch.float16 and half.shape == spec.shape
    with pytest.raises(ValueError):
        spec_augment(torch.zeros(2, 3, 8, 8), SpecAugment())
    with pytest.raises(ValueError):
        SpecAugment(max_width=-1)
