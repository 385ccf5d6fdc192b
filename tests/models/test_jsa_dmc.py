"""JSA (§3.6) and DMC (§3.7b): shapes, losses, k-reciprocal mask, normalisations, a tiny run with the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avsl_bench.models import build_model, get_method
from avsl_bench.models.dmc import DMCConfig, correspondence, soft_cluster
from avsl_bench.models.jsa import JSAConfig, reciprocal_mask, slot_attention_weights
from avsl_bench.models.recipes import load_recipe

SMALL = dict(visual="small_cnn", visual_widths=(8, 8, 8, 16, 16), visual_strides=(2, 2, 1, 2, 1), visual_weights="",
             audio="conv1d", audio_widths=(16, 16, 16), dim=16, tau=0.07)
METHODS = ("jsa", "dmc")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(method: str, **kw):
    torch.manual_seed(0)
    return build_model(method, get_method(method).config_cls(**{**SMALL, **kw}), audio_in_bins=32)


def _inputs(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 32, 32, generator=g), torch.randn(b, 32, 50, generator=g)


@pytest.mark.parametrize("method", METHODS)
def test_forward_loss_backward_localize(method):
    model = _model(method, **({"reciprocal_k": 2} if method == "jsa" else {})).train()
    image, audio = _inputs()
    emb = model(image, audio)
    assert all(t.shape[0] == 6 for t in emb.values())
    loss, stats = model.loss(emb)
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.item() > 0
    assert all(torch.is_tensor(v) and v.dim() == 0 and math.isfinite(v.item()) for v in stats.values())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    model.eval()
    grid = model.localize(image, audio)
    assert grid.shape == (6, 4, 4) and model.map_range == "unit"
    assert float(grid.min()) >= 0.0 and float(grid.max()) <= 1.0 + 1e-6
    assert torch.equal(grid, model.localize(image, audio))  # eval: deterministic (no masking)


def test_jsa_tokens_and_loss_terms():
    model = _model("jsa", reciprocal_k=2).train()
    image, audio = _inputs()
    v_tok, hw = model.visual_tokens(image)
    assert v_tok.shape == (6, 16, 16) and hw == (4, 4)
    assert model.audio_tokens(audio).shape == (6, 7, 16)  # conv1d: 50 frames / 2³ → 7 time tokens
    emb = model(image, audio)
    assert torch.allclose(emb["sv"].norm(dim=1), torch.ones(6)) and torch.allclose(emb["sa"].norm(dim=1), torch.ones(6))
    assert (emb["div"] >= 0).all() and (emb["att"] >= 0).all() and (emb["recon"] > 0).all()
    _, stats = model.loss(emb)
    assert stats["loss_info"] > 0
    # k ≥ batch: every pair is k-reciprocal, all negatives masked → InfoNCE is exactly 0
    _, stats = _model("jsa", reciprocal_k=20).train().loss(emb)
    assert float(stats["loss_info"]) == 0.0 and float(stats["masked_frac"]) == pytest.approx(30 / 36)


def test_jsa_mask_tokens_only_in_training():
    model = _model("jsa", mask_prob=0.5).train()
    tok = torch.randn(4, 10, 16)
    masked = model._mask(tok, model.mask_token_v)
    replaced = (masked != tok).any(dim=-1)
    assert replaced.any() and (~replaced).any()
    assert torch.equal(masked[replaced], model.mask_token_v.detach().expand(int(replaced.sum()), -1))
    assert torch.equal(model.eval()._mask(tok, model.mask_token_v), tok)


def test_jsa_augmentation_only_in_training_forward():
    from avsl_bench.features import normalize_image

    image = normalize_image(torch.randint(0, 256, (6, 3, 32, 32), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8))  # fmt: skip
    audio = _inputs()[1]
    model = _model("jsa", mask_prob=0.0)
    assert model.cfg.augment and model.cfg.jitter == (0.8, 0.8, 0.8, 0.2) and model.cfg.grayscale_p == 0.2
    model.eval()
    img_out, aud_out = model.augment(image, audio)
    assert img_out is image and aud_out is audio  # eval: untouched
    torch.manual_seed(1)
    first = model(image, audio)
    torch.manual_seed(2)
    assert all(torch.equal(t, first[k]) for k, t in model(image, audio).items())
    model.train()
    torch.manual_seed(1)
    img_out, aud_out = model.augment(image, audio)
    assert img_out.shape == image.shape and aud_out.shape == audio.shape
    assert not torch.equal(img_out, image) and (aud_out == 0).any() and not (audio == 0).any()
    torch.manual_seed(1)
    a = model(image, audio)
    torch.manual_seed(2)
    assert not torch.equal(model(image, audio)["sv"], a["sv"])  # the augmentation reaches the forward
    off = _model("jsa", mask_prob=0.0, augment=False).train()
    assert off.augment(image, audio) == (image, audio)
    torch.manual_seed(1)
    b = off(image, audio)
    torch.manual_seed(2)
    assert all(torch.equal(t, b[k]) for k, t in off(image, audio).items())  # nothing random left
    with pytest.raises(ValueError):
        JSAConfig(**{**SMALL, "blur_sigma": (2.0, 0.1)})


def test_reciprocal_mask_hand_made():
    # two tight groups {0, 1} and {2, 3} in both modalities; with k = 2 each sample's top-2 is its own group
    base = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]])
    sv = torch.nn.functional.normalize(base, dim=1)
    sa = torch.nn.functional.normalize(base + 0.01, dim=1)
    m = reciprocal_mask(sv, sa, k=2)
    expected = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    assert torch.equal(m, expected)
    # disagreeing modalities: audio groups {0, 2}, {1, 3} → no pair is a neighbour in both → nothing masked
    sa2 = torch.nn.functional.normalize(base[[0, 2, 1, 3]], dim=1)
    assert not reciprocal_mask(sv, sa2, k=2).any()
    # random case: symmetric, never the diagonal; k capped at the batch size
    g = torch.Generator().manual_seed(3)
    sv, sa = (torch.nn.functional.normalize(torch.randn(12, 5, generator=g), dim=1) for _ in range(2))
    for k in (1, 3, 6, 50):
        m = reciprocal_mask(sv, sa, k)
        assert torch.equal(m, m.t()) and not m.diagonal().any()
    assert reciprocal_mask(sv, sa, 50).sum() == 12 * 11 and not reciprocal_mask(sv, sa, 1).any()


def test_slot_attention_normalisation():
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(3, 2, 8, generator=g), torch.randn(3, 11, 8, generator=g)
    attn = slot_attention_weights(q, k, 8 ** -0.5)
    assert attn.shape == (3, 2, 11) and (attn > 0).all()
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(3, 2))
    # before renormalisation the weights are a softmax over slots
    raw = torch.einsum("bkd,bnd->bkn", q, k).mul(8 ** -0.5).softmax(dim=1) + 1e-8
    torch.testing.assert_close(attn, raw / raw.sum(dim=-1, keepdim=True))


def test_jsa_map_is_convex_combination_of_minmax_maps():
    model = _model("jsa", alpha=1.0).eval()
    image, audio = _inputs()
    ca_only = model.localize(image, audio)
    flat = ca_only.flatten(1)
    assert torch.allclose(flat.amax(1), torch.ones(6)) and torch.allclose(flat.amin(1), torch.zeros(6))
    model.cfg = JSAConfig(**{**SMALL, "alpha": 0.0})
    ia_only = model.localize(image, audio)
    model.cfg = JSAConfig(**{**SMALL, "alpha": 0.6})
    torch.testing.assert_close(model.localize(image, audio), 0.6 * ca_only + 0.4 * ia_only)


def test_dmc_soft_assignment_and_correspondence():
    g = torch.Generator().manual_seed(5)
    u = torch.nn.functional.normalize(torch.randn(3, 20, 8, generator=g), dim=-1)
    c, s = soft_cluster(u, torch.randn(4, 8, generator=g), iters=3, z=10.0)
    assert c.shape == (3, 4, 8) and s.shape == (3, 20, 4)
    torch.testing.assert_close(s.sum(dim=-1), torch.ones(3, 20))
    torch.testing.assert_close(c.norm(dim=-1), torch.ones(3, 4))
    sim = correspondence(c, c)
    torch.testing.assert_close(sim.diagonal(), torch.ones(3))
    # naive reference: (1/k) Σ_j cos(c_j^v, c_j^a)
    ref = torch.tensor([[sum(float(c[i, j] @ c[n, j]) for j in range(4)) / 4 for n in range(3)] for i in range(3)])
    torch.testing.assert_close(sim, ref)


def test_dmc_loss_matches_naive_hinge_and_map_is_assignment():
    model = _model("dmc", margin=0.5).train()
    image, audio = _inputs()
    emb = model(image, audio)
    loss, _ = model.loss(emb)
    sim = correspondence(emb["cv"], emb["ca"]).detach()
    ref = np.mean([max(0.0, 0.5 + float(sim[i, n]) - float(sim[i, i])) for i in range(6) for n in range(6) if n != i])
    assert loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-6)
    model.eval()
    cv, s, _ = model.visual_clusters(image)
    ca, _ = model.audio_clusters(audio)
    j = (cv * ca).sum(-1).argmax(1)
    grid = model.localize(image, audio)
    for b in range(6):
        torch.testing.assert_close(grid[b].flatten(), s[b, :, j[b]])


@pytest.mark.parametrize("method", METHODS)
def test_recipes_parse(method):
    for name in ("synthetic", "vggsound-10k", "vggsound-144k"):
        recipe = load_recipe(method, name)
        assert recipe.method == method
    cpu = load_recipe(method, "synthetic")
    pool = {"jsa": 2, "dmc": 4}[method]  # both end at a 4x4 map (8x8 / 16x16 grids)
    assert cpu.model.visual == "small_cnn" and cpu.model.visual_pool == pool and cpu.schedule.batch_size == 128
    if method == "jsa":
        gpu = load_recipe("jsa", "vggsound-144k")
        assert (gpu.optim.name, gpu.optim.lr, gpu.optim.weight_decay) == ("adamw", 5e-5, 0.01)
        assert (gpu.schedule.batch_size, gpu.schedule.epochs, gpu.runtime.amp) == (256, 50, "fp16")
        assert load_recipe("jsa", "vggsound-10k").schedule.epochs == 100
        assert gpu.input.audio_frontend == "stft160" and gpu.input.audio_seconds == 5.0 and gpu.model.alpha == 0.6
        for recipe in (gpu, cpu):  # §3.6 training augmentation, on in the GPU recipes and the CPU preset
            m = recipe.model
            assert m.augment and (m.blur_p, m.blur_sigma, m.jitter_p, m.grayscale_p) == (0.8, (0.1, 2.0), 0.8, 0.2)
            assert m.jitter == (0.8, 0.8, 0.8, 0.2) and (m.spec_mask_width, m.spec_mask_starts) == (9, (200, 257))


def test_stft160_frontend_shape():
    from avsl_bench.features import AudioFrontend

    x = torch.randn(2, 80_000) * 0.1
    out = AudioFrontend("stft160")(x)
    assert out.shape == (2, 1, 257, 501) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------- loop end to end


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from tests.train.conftest import write_split

    root = tmp_path_factory.mktemp("jsa_dmc_shards")
    return {"train": write_split(root / "train", "train", 32),
            "test": write_split(root / "test", "test", 8, seed=1),
            "test-neg": write_split(root / "test-neg", "test-neg", 4, seed=2, negative=True)}  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_tiny_training_run_and_predict(method, shards, tmp_path):
    from tests.train.conftest import TINY_RECIPE

    from avsl_bench.scoring.submission import open_submission
    from avsl_bench.train.loop import train
    from avsl_bench.train.predict import predict

    extra = "reciprocal_k = 4\nslot_iters = 2\n" if method == "jsa" else "clusters = 4\n"
    recipe = tmp_path / f"{method}.toml"
    recipe.write_text(TINY_RECIPE.format(method=method, extra=extra, cache="true"))
    run = train(method, shards["train"], tmp_path / "run", recipe, device="cpu", seed=0, epochs=1)
    assert (tmp_path / "run" / "final.pt").is_file() and run["steps"] == 2
    assert all(math.isfinite(v) for v in run["history"][-1].values())
    out = tmp_path / "preds.npz"
    summary = predict(tmp_path / "run", [shards["test"], shards["test-neg"]], out, device="cpu", workers=0)
    assert summary["samples"] == 12
    with open_submission(out) as sub:
        assert sub.shape == (224, 224) and str(sub.dtype) == "float32"
    maps = np.load(out)["maps"]
    assert maps.shape == (12, 224, 224) and np.isfinite(maps).all()
    assert maps.min() > -0.5 and maps.max() < 1.5  # unit-range maps (bicubic may overshoot a little)


@pytest.mark.parametrize("method", METHODS)
def test_autocast_keeps_slots_and_clusters_float32(method):
    model = _model(method, **({"reciprocal_k": 2} if method == "jsa" else {})).train()
    image, audio = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = model(image, audio)
    assert all(t.dtype == torch.float32 for t in emb.values())
    loss, _ = model.loss(emb)
    loss.backward()
    assert math.isfinite(loss.item())
