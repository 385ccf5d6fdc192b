"""Per-map operations (protocol §2–§3): hand-computed cases and literal reimplementations."""

from __future__ import annotations

import numpy as np
import pytest

from avsl_bench.scoring import maps as M

N = 224 * 224
K = N // 2  # 25,088


# ---------------------------------------------------------------------------------------------------
# literal reimplementations of the published evaluators (slow, one map at a time)


def _ref_normalize(value):
    """EZ-VSL / LVS ``normalize_img``."""
    vmin, vmax = value.min(), value.max()
    if not (vmax - vmin) == 0:
        value = (value - vmin) / (vmax - vmin)
    return value


def _ref_top50(p):
    q = _ref_normalize(p.copy())
    thr = np.sort(q.flatten())[int(q.shape[0] * q.shape[1] / 2)]
    return q >= thr


def _ref_lvs(p):
    """LVS test script: pred = 1 - normalize(-p); pred[pred > thr] = 1; pred[pred < 1] = 0."""
    pred = 1 - _ref_normalize(-p)
    thr = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] / 2)]
    pred[pred > thr] = 1
    pred[pred < 1] = 0
    return pred != 0


def _ref_confidence(p):
    """SLAVC: np.sort(flat)[-n//4:].mean() on the float32 map."""
    flat = p.flatten()
    return np.sort(flat)[-len(flat) // 4 :].mean()


def _ref_ciou(mask, gt):
    """EZ-VSL cal_CIOU with float64 maps."""
    infer = np.zeros(mask.shape)
    infer[mask] = 1
    gt = gt.astype(np.float64)
    return np.sum(infer * gt) / (np.sum(gt) + np.sum(infer * (gt == 0)))


def _map_zoo(seed: int = 0) -> np.ndarray:
    """Named hard cases: float16-origin ties, rounded values, constants, ±0, huge magnitudes."""
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((24, 224, 224)).astype(np.float32)
    maps[0:4] = maps[0:4].astype(np.float16).astype(np.float32)  # float16-origin values
    maps[4:8] = np.round(maps[4:8] * 2)  # heavy ties
    maps[8] = 3.0
    maps[9] = -2.0
    maps[10] = 0.0
    maps[11] = -0.0
    maps[11, ::3] = 0.0  # mixed signed zeros
    maps[12] = rng.integers(0, 2, (224, 224))  # two values
    maps[13] *= 1e30
    maps[14] *= 1e-30
    maps[15] = maps[15] * 1e-3 + 1e4  # large offset, rounding collisions in p - min
    maps[16] = rng.random((224, 224), dtype=np.float32)
    maps[17] = np.where(maps[17] > 0, 3e38, -3e38)  # max - min overflows float32
    maps[18, :112] = 7.0  # exactly half the map tied at the maximum
    maps[19] = rng.random((224, 224), dtype=np.float32) * 100
    maps[19, 0, 0] = -1e9  # p - min rounds to multiples of 64: thousands of q ties below s[k]
    return maps


# ---------------------------------------------------------------------------------------------------
# binarisation


def _three_level_map(n_low=25_000, n_mid=200) -> np.ndarray:
    flat = np.full(N, 2.0, np.float32)
    flat[:n_low] = 0.0
    flat[n_low : n_low + n_mid] = 1.0
    return flat.reshape(1, 224, 224)


def test_top50_ties_at_the_median_are_all_on():
    # sorted: 25,000 × 0, 200 × 1, 24,976 × 2 → s[25,088] = 1 → q = 0, 0.5, 1 and q ≥ 0.5.
    mask = M.binarize(_three_level_map(), "top50")
    assert mask.sum() == 200 + 24_976


def test_lvs_ties_at_the_median_are_off():
    # q = 1 - minmax(-p) = 0, 0.5, 1; s_q[k] = 0.5; (q > 0.5) | (q >= 1) keeps only the 2s.
    mask = M.binarize(_three_level_map(), "lvs")
    assert mask.sum() == 24_976
    assert np.array_equal(mask[0], _three_level_map()[0] == 2.0)


def test_top50_exactly_half_when_values_distinct():
    p = np.arange(N, dtype=np.float32).reshape(1, 224, 224)
    assert M.binarize(p, "top50").sum() == N - K  # indices k..n-1
    assert M.binarize(p, "lvs").sum() == N - K - 1  # strictly above s[k]


@pytest.mark.parametrize("value", [3.0, 0.0, -2.0, 1e-10, -1e-10])
def test_constant_maps(value):
    p = np.full((1, 224, 224), value, np.float32)
    assert M.binarize(p, "top50").all()  # minmax leaves it unchanged; q ≥ s_q[k] everywhere
    # lvs: q = 1 - (-p) = 1 + p in float32; the (q >= 1) clause decides. For value >= 0 all on,
    # for value < 0 all off -- except negatives so small that 1 + value rounds to 1.0 in float32
    # (|value| <= 2**-25): the literal formula turns them all on, and so do we.
    lvs = M.binarize(p, "lvs")
    expected_on = bool(np.float32(1) + np.float32(value) >= 1)
    assert lvs.all() if expected_on else not lvs.any()
    assert np.array_equal(lvs[0], _ref_lvs(p[0]))
    fixed = M.binarize(p, "fixed")
    assert fixed.all() if value >= 0.5 else not fixed.any()
    if value == -2.0:
        assert not M.binarize(p, "lvs").any()
    if value == -1e-10:
        assert M.binarize(p, "lvs").all()  # recorded float32 behaviour of the LVS formula


def test_fixed_threshold_is_inclusive_and_float32():
    p = np.array([[[0.49999997, 0.5, 0.7]]], np.float32)
    assert M.binarize(p, "fixed").tolist() == [[[False, True, True]]]
    # float32(0.7) < 0.7 in float64, but the threshold is rounded to float32 like the reference
    assert M.binarize(p, "fixed:0.7").tolist() == [[[False, False, True]]]
    assert M.binarize(p, "fixed", threshold=0.7).tolist() == [[[False, False, True]]]


def test_binarize_matches_literal_evaluators():
    maps = _map_zoo()
    with np.errstate(invalid="ignore", over="ignore"):
        top = M.binarize(maps, "top50")
        lvs = M.binarize(maps, "lvs")
        for i, p in enumerate(maps):
            assert np.array_equal(top[i], _ref_top50(p)), i
            assert np.array_equal(lvs[i], _ref_lvs(p)), i


def test_lvs_transform_is_literally_one_minus_minmax_of_minus_p():
    flat = _map_zoo()[:17].reshape(17, N)
    q = M._lvs_rows(flat, flat.min(axis=1), flat.max(axis=1), np.empty_like(flat))
    for p, got in zip(flat, q):
        assert np.array_equal(got, 1 - _ref_normalize(-p))


def test_binarize_rejects_bad_modes():
    p = np.zeros((1, 4, 4), np.float32)
    for bad in ("top-50", "fixed:x", "top50:0.5"):
        with pytest.raises(ValueError):
            M.binarize(p, bad)
    with pytest.raises(ValueError):
        M.binarize(p, "lvs", threshold=0.5)
    with pytest.raises(ValueError):
        M.binarize(np.zeros((4, 4)), "top50")


def test_minmax_float32_and_constant_unchanged():
    p = np.array([[[1.0, 2.0, 4.0]], [[5.0, 5.0, 5.0]]], np.float64)
    out = M.minmax(p)
    assert out.dtype == np.float32
    assert out.tolist() == [[[0.0, np.float32(1 / 3), 1.0]], [[5.0, 5.0, 5.0]]]


# ---------------------------------------------------------------------------------------------------
# cIoU


def test_ciou_flickr_half_weights():
    mask = np.array([[[True, True, False, True]]])
    gt = np.array([[[1.0, 0.5, 0.5, 0.0]]], np.float32)
    # Σ mask·gt = 1.5; Σ gt = 2; Σ mask·[gt == 0] = 1 → 1.5 / 3
    assert M.ciou(mask, gt).tolist() == [0.5]
    assert M.ciou(mask, gt).dtype == np.float64


def test_ciou_empty_cases():
    empty = np.zeros((1, 224, 224), np.float32)
    assert np.isnan(M.ciou(np.zeros((1, 224, 224), bool), empty)[0])  # 0/0
    assert M.ciou(np.ones((1, 224, 224), bool), empty)[0] == 0.0
    gt = empty.copy()
    gt[0, :10, :10] = 1
    assert M.ciou(np.zeros((1, 224, 224), bool), gt)[0] == 0.0
    assert M.ciou(gt > 0, gt)[0] == 1.0


def test_ciou_matches_reference_on_vggss_and_flickr_like_gts():
    rng = np.random.default_rng(3)
    maps = _map_zoo()[:8]
    gts = np.zeros((8, 224, 224), np.float32)
    for i in range(8):
        for _ in range(3):  # Flickr consensus: min(count / 2, 1)
            y, x = rng.integers(0, 200, 2)
            gts[i, y : y + rng.integers(1, 100), x : x + rng.integers(1, 100)] += 0.5
    np.minimum(gts, 1, out=gts)
    gts[6] = 0  # empty GT
    gts[7] = rng.random((224, 224), dtype=np.float32) * (gts[7] > 0)  # arbitrary values: general float64 path
    masks = M.binarize(maps, "top50")
    masks[5] = False
    got = M.ciou(masks, gts)
    for i in range(8):
        assert got[i] == _ref_ciou(masks[i], gts[i])


# ---------------------------------------------------------------------------------------------------
# confidence


def test_confidence_bit_identical_to_slavc():
    rng = np.random.default_rng(7)
    maps = np.concatenate([
        _map_zoo(1)[:17],
        rng.standard_normal((16, 224, 224)).astype(np.float16).astype(np.float32),
        rng.integers(-3, 4, (8, 224, 224)).astype(np.float32),
        (rng.random((8, 224, 224), dtype=np.float32) * 1000).astype(np.float16).astype(np.float32),
    ])
    got = M.confidence(maps)
    assert got.dtype == np.float32
    ref = np.array([_ref_confidence(p) for p in maps], np.float32)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_confidence_hand_case_and_float16_input():
    p = np.arange(8, dtype=np.float16).reshape(1, 2, 4)
    assert M.confidence(p).tolist() == [6.5]  # mean of the 2 largest (ceil(8/4))


# ---------------------------------------------------------------------------------------------------
# MSE, area, buckets


def test_pixel_mse():
    maps = np.array([[[0.0, 2.0, 4.0, 4.0]], [[0.5, 0.5, 0.5, 0.5]]], np.float32)
    gts = np.array([[[0.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]], np.float32)
    # q = [0, .5, 1, 1] → errors [0, .25, 0, 1] → 0.3125; constant map kept as is → 0.25
    assert M.pixel_mse(maps, gts).tolist() == [0.3125, 0.25]


def test_area_and_size_buckets():
    gts = np.zeros((3, 224, 224), np.float32)
    gts[1, :32, :32] = 1  # 1024 = 32² → medium
    gts[2] = 0.5  # Flickr weights count half: 25,088 → huge
    assert M.area(gts).tolist() == [0.0, 1024.0, 25_088.0]
    assert M.size_bucket(M.area(gts)).tolist() == ["small", "medium", "huge"]
    edges = [0, 1023.5, 1024, 9215.5, 9216, 20735.5, 20736, 50176]
    assert M.size_bucket(edges).tolist() == ["small", "small", "medium", "medium", "large", "large", "huge", "huge"]


# ---------------------------------------------------------------------------------------------------
# resize


def test_resize_noop_at_grid():
    p = np.random.default_rng(0).random((2, 224, 224), dtype=np.float32)
    assert M.resize_to_grid(p) is p
    out = M.resize_to_grid(p.astype(np.float16))
    assert out.dtype == np.float32 and np.array_equal(out, p.astype(np.float16).astype(np.float32))


def test_resize_recorded_behaviour():
    p = np.array([[[0.0, 1.0], [2.0, 3.0]]], np.float16)
    out = M.resize_to_grid(p, "bilinear", align_corners=True)
    assert out.shape == (1, 224, 224) and out.dtype == np.float32
    assert [out[0, 0, 0], out[0, 0, -1], out[0, -1, 0], out[0, -1, -1]] == [0.0, 1.0, 2.0, 3.0]
    half = M.resize_to_grid(p, "bilinear", align_corners=False)
    assert half[0, 0, 0] == 0.0 and half[0, -1, -1] == 3.0  # edge pixels clamp
    assert not np.array_equal(half, out)
    cubic = M.resize_to_grid(p)  # default bicubic, align_corners=False: overshoots past the corners
    assert cubic.shape == (1, 224, 224) and cubic.dtype == np.float32
    assert cubic.min() < 0.0 and cubic.max() > 3.0
    assert M.resize_to_grid(np.ones((3, 7, 9), np.float64), "bilinear").shape == (3, 224, 224)
    with pytest.raises(ValueError):
        M.resize_to_grid(p, "nearest")


# ---------------------------------------------------------------------------------------------------
# fused path


@pytest.mark.parametrize("mode", ["top50", "lvs", "fixed", "fixed:0.25"])
def test_per_sample_scores_equals_separate_functions(mode):
    maps = _map_zoo(5)
    rng = np.random.default_rng(5)
    gts = (rng.random(maps.shape) < 0.3).astype(np.float32)
    gts[::3] *= 0.5
    gts[1] = 0
    gts[2] *= rng.random((224, 224), dtype=np.float32)  # arbitrary GT values
    with np.errstate(invalid="ignore", over="ignore"):
        fused = M.per_sample_scores(maps, gts, mode, mse=True)
        masks = M.binarize(maps, mode)
        mse = M.pixel_mse(maps, gts)
    assert np.array_equal(fused.ciou, M.ciou(masks, gts), equal_nan=True)
    assert np.array_equal(fused.confidence.view(np.uint32), M.confidence(maps).view(np.uint32))
    assert np.array_equal(fused.area, M.area(gts))
    assert np.array_equal(fused.mse, mse, equal_nan=True)
    assert M.per_sample_scores(maps[:2], gts[:2], mode).mse is None


# ---------------------------------------------------------------------------------------------------
# the batched (vectorised) path against a literal per-map reference


def _ref_mse(p, gt):
    """(minmax(p) - gt)² in float32, summed in float64 one map at a time, divided by n."""
    d = _ref_normalize(p.copy()) - gt
    return np.add.reduce((d * d).ravel(), dtype=np.float64) / d.size


def _ref_fixed(p, t):
    return p >= np.float32(t)


def _smooth_float16_maps(rng, b):
    """Model-like maps: 7×7 logits upsampled ×32, a little noise, stored as float16 (many ties)."""
    scale = rng.choice([1e-3, 1.0, 30.0, 1e4], (b, 1, 1)).astype(np.float32)
    low = rng.standard_normal((b, 7, 7)).astype(np.float32) * scale
    maps = np.repeat(np.repeat(low, 32, axis=1), 32, axis=2).astype(np.float16)
    maps += (0.01 * rng.standard_normal(maps.shape)).astype(np.float16)
    return maps.astype(np.float32)


def _varied_gts(rng, b):
    """VGG-SS-like box unions {0, 1}, Flickr consensus {0, 0.5, 1}, empty, full, and arbitrary values."""
    gts = np.zeros((b, 224, 224), np.float32)
    for i in range(b):
        weight = 0.5 if i % 3 == 0 else 1.0  # every third GT is a Flickr consensus map
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, 200, 2)
            gts[i, y : y + rng.integers(1, 120), x : x + rng.integers(1, 120)] += weight
    np.minimum(gts, 1, out=gts)
    gts[1] = 0  # empty GT (and with an all-off mask: 0/0 = NaN)
    gts[4] = 1
    gts[7] = rng.random((224, 224), dtype=np.float32) * (gts[7] > 0)  # arbitrary values: general path
    return gts


@pytest.mark.parametrize("mode", ["top50", "lvs", "fixed", "fixed:0.25"])
def test_batched_scores_bit_identical_to_literal_per_map_reference(mode):
    rng = np.random.default_rng(11)
    maps = np.concatenate([_map_zoo(11), _smooth_float16_maps(rng, 21), np.round(_map_zoo(12)[:6] * 3)])
    gts = _varied_gts(rng, maps.shape[0])  # 51 maps: blocks of M._BLOCK rows plus a partial one
    gts[10] = 0  # a constant map (zoo[10] == 0) on an empty GT
    name, _, value = mode.partition(":")
    want_mse = rng.random(maps.shape[0]) < 0.7
    with np.errstate(invalid="ignore", over="ignore"):
        got = M.per_sample_scores(maps, gts, mode, mse=want_mse)
        for i, (p, g) in enumerate(zip(maps, gts)):
            if name == "top50":
                mask = _ref_top50(p)
            elif name == "lvs":
                mask = _ref_lvs(p)
            else:
                mask = _ref_fixed(p, float(value or 0.5))
            ref_ciou = _ref_ciou(mask, g)
            assert got.ciou[i] == ref_ciou or (np.isnan(got.ciou[i]) and np.isnan(ref_ciou)), i
            assert got.confidence[i].view(np.uint32) == _ref_confidence(p).view(np.uint32), i
            assert got.area[i] == np.add.reduce(g.ravel(), dtype=np.float64), i
            if want_mse[i]:
                ref_mse = _ref_mse(p, g)
                assert got.mse[i] == ref_mse or (np.isnan(got.mse[i]) and np.isnan(ref_mse)), i
            else:
                assert np.isnan(got.mse[i]), i
    if name == "fixed":
        assert np.isnan(got.ciou[10])  # all-off mask on an empty GT: 0/0


def test_top50_threshold_window_misses_are_searched_in_full():
    # p - min rounds to multiples of 64 (huge negative outlier): thousands of equal q below s[k]
    p = _map_zoo()[19:20]
    s = np.sort(p.reshape(1, -1), axis=1)
    q = M._minmax_rows(s, s[:, 0], s[:, -1], np.empty_like(s))[0]
    assert q[K - M._WINDOW] == q[K]  # the ties reach below the window
    assert np.array_equal(M.binarize(p, "top50")[0], _ref_top50(p[0]))


def test_mse_selection_and_block_boundaries():
    rng = np.random.default_rng(2)
    maps = _smooth_float16_maps(rng, 2 * M._BLOCK + 3)
    gts = _varied_gts(rng, maps.shape[0])
    full = M.per_sample_scores(maps, gts, mse=True)
    assert np.array_equal(full.mse, M.pixel_mse(maps, gts))
    some = np.zeros(maps.shape[0], bool)
    some[[0, M._BLOCK, maps.shape[0] - 1]] = True
    part = M.per_sample_scores(maps, gts, mse=some)
    assert np.array_equal(part.mse[some], full.mse[some]) and np.isnan(part.mse[~some]).all()
    assert M.per_sample_scores(maps, gts, mse=False).mse is None
    for b in (1, M._BLOCK, M._BLOCK + 1):  # chunk sizes around a block give the same values
        one = M.per_sample_scores(maps[:b], gts[:b], mse=True)
        assert np.array_equal(one.ciou, full.ciou[:b], equal_nan=True) and np.array_equal(one.mse, full.mse[:b])
