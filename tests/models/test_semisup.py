"""Semi-supervised pieces (baselines spec §3.7): map head and losses, DMT's IoU filter / IPL and EMA teachers,
XPL's Pearson selection + ramp, sharpening and PL-EMA bank."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avsl_bench.models import build_model
from avsl_bench.models.dmt import DMTConfig, dmt_pseudo_labels
from avsl_bench import features
from avsl_bench.models.augment import augment_image
from avsl_bench.models.base import ema_update
from avsl_bench.models.semisup import (PseudoLabelBank, SemiSupConfig, binarise, contrastive, mask_iou, pearson,
                                       pixel_bce, pool_mask, ramp_fraction, sharpen, top_fraction)
from avsl_bench.models.xpl import XPLConfig, xpl_selection

SMALL = dict(visual="small_cnn", visual_widths=(8, 8, 8, 16, 16), visual_strides=(2, 2, 1, 2, 1), visual_weights="",
             audio="conv1d", audio_widths=(16, 16, 16), dim=16, tau=0.07,
             b_visual="small_cnn", b_visual_widths=(8, 16, 16, 16, 16), b_visual_strides=(2, 2, 2, 1, 1),
             b_audio="spec_cnn", b_audio_widths=(8, 16), b_audio_strides=(2, 2))


def _model(method: str, **kw):
    cfg = (DMTConfig if method == "dmt" else XPLConfig)(**{**SMALL, **kw})
    return build_model(method, cfg, audio_in_bins=32)


def _batch(n=6, labelled=(0, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = torch.zeros(n, dtype=torch.bool)
    lab[list(labelled)] = True
    mask = torch.zeros(n, 32, 32)
    mask[:, 8:24, 0:16] = 1.0
    return dict(image=torch.randn(n, 3, 32, 32, generator=g), audio=torch.randn(n, 32, 50, generator=g), mask=mask,
                labelled=lab, index=torch.arange(10, 10 + n))


def test_pool_mask_and_pixel_bce():
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :2] = 1.0
    pooled = pool_mask(mask, (2, 2))
    torch.testing.assert_close(pooled, torch.tensor([[[0.5, 0.0], [0.0, 0.0]]]))
    p = torch.tensor([[[0.8, 0.1], [0.2, 0.3]]])
    ref = -(0.5 * math.log(0.8) + 0.5 * math.log(0.2) + math.log(0.9) + math.log(0.8) + math.log(0.7)) / 4
    torch.testing.assert_close(pixel_bce(p, pooled), torch.tensor([ref]))


def test_binarise_iou_and_intersection_pseudo_labels():
    a = torch.tensor([[[0.0, 1.0], [0.7, 0.2]]])  # min-max: same values; ≥ 0.6 → cells (0,1), (1,0)
    b = torch.tensor([[[2.0, 12.0], [4.0, 10.0]]])  # min-max: 0, 1, 0.2, 0.8 → cells (0,1), (1,1)
    torch.testing.assert_close(binarise(a, 0.6), torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    torch.testing.assert_close(mask_iou(binarise(a, 0.6), binarise(b, 0.6)), torch.tensor([1 / 3]))
    ipl, keep, iou = dmt_pseudo_labels(a, b, 0.6, 0.3)
    torch.testing.assert_close(ipl, torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]))
    assert keep.tolist() == [True] and not dmt_pseudo_labels(a, b, 0.6, 0.7)[1].any()
    same = dmt_pseudo_labels(a, a * 3 + 1, 0.6, 0.7)  # affine copies agree: IoU 1, IPL = the mask
    assert same[1].all() and torch.equal(same[0], binarise(a, 0.6))
    flat = torch.zeros(1, 2, 2)
    assert mask_iou(binarise(flat, 0.6), binarise(flat, 0.6)).item() == 0.0  # both empty: rejected


def test_pearson_selection_and_ramp():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, 3, generator=g), torch.randn(5, 3, 3, generator=g)
    ref = [np.corrcoef(x[i].flatten().numpy(), y[i].flatten().numpy())[0, 1] for i in range(5)]
    torch.testing.assert_close(pearson(x, y), torch.tensor(ref, dtype=torch.float32), rtol=1e-5, atol=1e-5)
    assert pearson(torch.ones(1, 2, 2), x[:1, :2, :2]).item() == 0.0
    # ρ: 1.0, 0.9 (noisy), 0.85, −1 (rejected), 0.95 (labelled row: not a candidate)
    base = torch.randn(5, 4, 4, generator=g)
    rho_target = torch.tensor([1.0, 0.9, 0.85, -1.0, 0.95])
    noise = torch.randn(5, 4, 4, generator=g)
    other = torch.stack([_with_correlation(base[i], noise[i], float(r)) for i, r in enumerate(rho_target)])
    rows = torch.tensor([True, True, True, True, False])
    admit, rho = xpl_selection(base, other, rows, 0.8, 1.0)
    torch.testing.assert_close(rho, rho_target, rtol=1e-4, atol=1e-4)
    assert admit.tolist() == [True, True, True, False, False]
    assert xpl_selection(base, other, rows, 0.8, 1 / 3)[0].tolist() == [True, False, False, False, False]
    assert xpl_selection(base, other, rows, 0.8, 0.5)[0].tolist() == [True, True, False, False, False]
    assert [ramp_fraction(e, 5) for e in range(7)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]
    assert ramp_fraction(0, 0) == 1.0
    assert not top_fraction(torch.ones(3), torch.zeros(3, dtype=torch.bool), 1.0).any()


def _with_correlation(x: torch.Tensor, noise: torch.Tensor, rho: float) -> torch.Tensor:
    """A map whose Pearson correlation with x is exactly rho (noise orthogonalised against x)."""
    xc = (x - x.mean()).flatten()
    nc = (noise - noise.mean()).flatten()
    nc = nc - (nc @ xc) / (xc @ xc) * xc
    out = rho * xc / xc.norm() + math.sqrt(max(0.0, 1 - rho**2)) * nc / nc.norm()
    return out.view_as(x)


def test_sharpen_and_pl_ema_bank():
    torch.testing.assert_close(sharpen(torch.tensor([0.5, 1.0, 0.0]), 10.0),
                               torch.tensor([0.5, 1 / (1 + math.exp(-5)), 1 / (1 + math.exp(5))]))
    bank = PseudoLabelBank(0.7)
    first = bank.update(torch.tensor([3, 1]), torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(first, torch.tensor([[1.0], [0.0]]))  # first visit stores x
    second = bank.update(torch.tensor([1, 7]), torch.tensor([[1.0], [0.5]]))  # 1 seen; 7 new (bank grows)
    torch.testing.assert_close(second, torch.tensor([[0.3], [0.5]]))
    third = bank.update(torch.tensor([3]), torch.tensor([[0.0]]))
    torch.testing.assert_close(third, torch.tensor([[0.7]]))
    assert bank.values.shape == (8, 1) and bank.seen.tolist() == [False, True, False, True] + [False] * 3 + [True]


def test_ema_update_parameters_and_buffers():
    torch.manual_seed(0)
    student, teacher = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        student.weight.fill_(2.0)
        teacher.weight.fill_(0.0)
    student(torch.randn(8, 3))  # running stats move
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher.weight, torch.full((3,), 0.2))
    torch.testing.assert_close(teacher.running_mean, 0.1 * student.running_mean)
    assert teacher.num_batches_tracked.item() == 1
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), student.state_dict().values()))
    student(torch.randn(8, 3))
    ema_update(teacher, student, 0.5, buffers=False)  # SLAVC: parameters only
    assert torch.equal(teacher.weight, student.weight) and teacher.num_batches_tracked.item() == 1
    assert not torch.equal(teacher.running_mean, student.running_mean)


def colour_jitter(image, strengths):
    jitter = SemiSupConfig(jitter_a=tuple(strengths)).jitter("a")
    return augment_image(image, jitter)


def _reference_jitter(image: torch.Tensor, strengths) -> torch.Tensor:
    """The DMT/XPL colour jitter as first written (before the shared `models.augment`): brightness, contrast,
    saturation in that order, factors 1 + s·(2u − 1) drawn one tensor per non-zero strength, clipped at the end."""
    mean = torch.tensor(features.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(features.IMAGENET_STD).view(1, 3, 1, 1)
    x, n = image * std + mean, image.shape[0]
    w = torch.tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
    b, c, s = strengths
    if b:
        x = x * (1.0 + b * (2.0 * torch.rand(n, 1, 1, 1) - 1.0))
    if c:
        level = (x * w).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        x = (x - level) * (1.0 + c * (2.0 * torch.rand(n, 1, 1, 1) - 1.0)) + level
    if s:
        gray = (x * w).sum(1, keepdim=True)
        x = (x - gray) * (1.0 + s * (2.0 * torch.rand(n, 1, 1, 1) - 1.0)) + gray
    return (x.clamp(0.0, 1.0) - mean) / std


def test_colour_jitter_moves_no_pixel_and_zero_strength_is_identity():
    torch.manual_seed(0)
    image = torch.randn(4, 3, 8, 8)
    assert torch.equal(colour_jitter(image, (0.0, 0.0, 0.0)), image)
    out = colour_jitter(torch.zeros(4, 3, 8, 8).index_fill_(3, torch.tensor([2]), 1.0), (0.4, 0.4, 0.4))
    assert out.shape == (4, 3, 8, 8) and not torch.equal(out, image)
    # a vertical bright stripe stays where it was: columns other than 2 are uniform per image and channel
    others = out[..., [0, 1, 3, 4, 5, 6, 7]]
    assert torch.allclose(others, others[..., :1].expand_as(others))


@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.4), (0.2, 0.2, 0.8), (0.0, 0.5, 0.0)])
def test_colour_jitter_is_bit_identical_to_the_original_draws(strengths):
    """Moving the jitter into `models.augment` changed neither the random draws nor the output."""
    image = features.normalize_image(torch.randint(0, 256, (8, 3, 16, 16), generator=torch.Generator().manual_seed(1),
                                                   dtype=torch.uint8))  # fmt: skip
    torch.manual_seed(11)
    ours, after_ours = colour_jitter(image, strengths), torch.rand(4)
    torch.manual_seed(11)
    ref, after_ref = _reference_jitter(image, strengths), torch.rand(4)
    assert torch.equal(ours, ref) and torch.equal(after_ours, after_ref)


def test_contrastive_on_selected_rows_matches_ezvsl():
    from avsl_bench.models.ezvsl import EZVSL, EZVSLConfig

    torch.manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(5, 8, 2, 2), dim=1)
    a = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    rows = torch.tensor([True, False, True, True, False])
    ez = EZVSL(EZVSLConfig(visual="small_cnn", visual_weights="", audio="conv1d", dim=8, tau=0.07), audio_in_bins=8)
    torch.testing.assert_close(contrastive(v, a, rows, 0.07), ez.loss({"v": v[rows], "a": a[rows]})[0])
    assert contrastive(v, a, torch.tensor([True, False, False, False, False]), 0.07).item() == 0.0


def test_dmt_teachers_track_students_in_warmup_then_ema():
    torch.manual_seed(0)
    model = _model("dmt", ema=0.5).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    b = _batch()
    model.start_epoch(0, warmup=True)
    for _ in range(2):
        loss, stats = model.loss(model(**b))
        assert set(stats) == {"loss_sup_a", "loss_sup_b"}  # warm-up: supervised on labelled rows only
        opt.zero_grad()
        loss.backward()
        opt.step()
    stats_before = [b_.clone() for b_ in model.net_a.buffers()]
    model(**b)  # the teacher update comes before the forward: teachers = students (momentum 0)
    for t, s in ((model.teacher_a, model.net_a), (model.teacher_b, model.net_b)):
        assert all(torch.equal(x, y) for x, y in zip(t.parameters(), s.parameters()))
    assert all(torch.equal(x, y) for x, y in zip(model.teacher_a.buffers(), stats_before))  # BN statistics too
    model.start_epoch(1, warmup=False)
    before = [p.clone() for p in model.teacher_a.parameters()]
    emb = model(**b)
    loss, stats = model.loss(emb)
    assert {"loss_unsup_a", "kept", "iou"} <= set(stats) and "tp_a" in emb and not emb["tp_a"].requires_grad
    opt.zero_grad()
    loss.backward()
    opt.step()
    model(**b)
    for t_old, t_new, s in zip(before, model.teacher_a.parameters(), model.net_a.parameters()):
        torch.testing.assert_close(t_new, 0.5 * t_old + 0.5 * s.detach())
    assert not any(p.requires_grad for p in model.teacher_a.parameters())
    model.eval()
    grid = model.localize(b["image"], b["audio"])
    expected = 0.5 * (model.teacher_a(b["image"], b["audio"])["p"] + model.teacher_b(b["image"], b["audio"])["p"])
    torch.testing.assert_close(grid, expected)
    assert model.map_range == "unit" and 0.0 <= float(grid.min()) and float(grid.max()) <= 1.0


def test_dmt_loss_uses_gt_on_labelled_and_ipl_on_kept_rows():
    torch.manual_seed(0)
    model = _model("dmt").train()
    model.start_epoch(3, warmup=False)
    emb = model(**_batch(labelled=(0,)))
    emb["tp_a"] = emb["tp_b"] = torch.zeros_like(emb["p_a"])
    emb["tp_a"][1:3, 0, 0] = emb["tp_b"][1:3, 0, 0] = 1.0  # rows 1, 2: identical teacher maps → kept, IPL = cell
    _, stats = model.loss(emb)
    target = torch.zeros_like(emb["p_a"])
    target[0], target[1:3, 0, 0] = emb["t"][0], 1.0
    rows = torch.tensor([True, True, True, False, False, False])
    ref = pixel_bce(emb["p_a"], target)[rows].mean()
    torch.testing.assert_close(stats["loss_sup_a"], ref.detach())
    torch.testing.assert_close(stats["kept"], torch.tensor(2 / 5))


def test_xpl_cross_refines_with_the_other_models_ema_pseudo_labels():
    torch.manual_seed(0)
    model = _model("xpl", pearson_threshold=-1.0, ramp_epochs=0).train()
    model.start_epoch(2, warmup=False)
    b = _batch(labelled=(0,))
    emb = model(**b)
    loss, stats = model.loss(emb)
    unl = torch.arange(1, 6)
    pl_b = sharpen(emb["p_b"][unl].detach(), 10.0)  # first visit: the bank holds φ(P^B)
    torch.testing.assert_close(stats["loss_cross_a"], pixel_bce(emb["p_a"][unl], pl_b).mean().detach())
    assert stats["admitted"].item() == 1.0 and torch.isfinite(loss)
    emb2 = model(**b)  # second visit: PL = 0.7·old + 0.3·φ(new)
    model.loss(emb2)
    torch.testing.assert_close(model.banks["b"].values[b["index"][unl]],
                               0.7 * pl_b + 0.3 * sharpen(emb2["p_b"][unl].detach(), 10.0))


def test_xpl_warmup_is_supervised_and_ramp_counts_from_the_phase_start():
    model = _model("xpl", pearson_threshold=-1.0, ramp_epochs=4).train()
    b = _batch(labelled=(0,))
    model.start_epoch(0, warmup=True)
    assert set(model.loss(model(**b))[1]) == {"loss_sup_a", "loss_sup_b"}
    model.start_epoch(1, warmup=False)
    assert model.loss(model(**b))[1]["admitted"].item() == pytest.approx(2 / 5)  # ceil(0.25 · 5) of 5
    model.start_epoch(2, warmup=False)
    assert model.loss(model(**b))[1]["admitted"].item() == pytest.approx(3 / 5)  # ceil(0.5 · 5)


def test_pair_needs_matching_grids():
    model = _model("xpl", b_visual_strides=(2, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="different map grids"):
        model(**_batch())


@pytest.mark.parametrize("epochs,warmup", [(1, 1), (2, 1), (6, 4), (14, 10), (28, 20)])
def test_epoch_override_keeps_the_warmup_share(epochs, warmup):
    from avsl_bench.models.recipes import load_recipe

    schedule = load_recipe("dmt", "synthetic").with_epochs(epochs).schedule  # 10 warm-up of 14
    assert (schedule.epochs, schedule.warmup_epochs) == (epochs, warmup)
    assert load_recipe("ezvsl", "synthetic").with_epochs(3).schedule.warmup_epochs == 0
