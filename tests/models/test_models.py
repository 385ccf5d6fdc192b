"""Model contract (every registered method), losses against naive references, SLAVC momentum, maps, recipes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from avsl_bench.errors import UnknownNameError
from avsl_bench.models import build_model, get_method, method_registry
from avsl_bench.models import maps as M
from avsl_bench.models.ezvsl import EZVSLConfig, mil_logits
from avsl_bench.models.recipes import RecipeError, baselines_dir, list_recipes, load_recipe, parse_recipe
from avsl_bench.models.slavc import SLAVCConfig, slavc_logits

SMALL = dict(visual="small_cnn", visual_widths=(8, 8, 8, 16, 16), visual_strides=(2, 2, 1, 2, 1), visual_weights="",
             audio="conv1d", audio_widths=(16, 16, 16), dim=16, tau=0.07)


def _small(method: str):
    cfg = get_method(method).config_cls(**SMALL)
    return build_model(method, cfg, audio_in_bins=32)


def _inputs(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 32, 32, generator=g), torch.randn(b, 32, 50, generator=g)


@pytest.mark.parametrize("method", method_registry().names())
def test_model_contract(method):
    torch.manual_seed(0)
    model = _small(method).train()
    image, audio = _inputs()
    emb = model(image, audio)
    assert all(t.shape[0] == 6 for t in emb.values())
    loss, stats = model.loss(emb)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in stats.values())
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    model.eval()
    grid = model.localize(image, audio)
    assert grid.shape == (6, 4, 4)  # 32 px / stride 8
    one_pass, emb = model.localize_and_embed(image, audio)  # what predict calls
    ref = model.embeddings(image, audio)
    assert torch.equal(one_pass, grid) and model.localize_and_embed(image, audio, embed=False)[1] is None
    assert (emb is None) == (ref is None) and all(torch.equal(x, y) for x, y in zip(emb or (), ref or ()))
    if model.map_range == "cosine":  # logits cos/τ
        assert float(grid.abs().max()) <= 1 / model.tau + 1e-4
    else:  # per-image normalised maps
        assert model.map_range == "unit" and 0.0 <= float(grid.min()) and float(grid.max()) <= 1.0 + 1e-6
    assert model.sample_scores(image, audio) is None


def test_a_method_must_define_its_map():
    """`localize` and `localize_and_embed` default to each other, so a class that defines neither is refused."""
    from avsl_bench.models.base import AVModel

    with pytest.raises(TypeError, match="NoMap must define localize or localize_and_embed"):
        type("NoMap", (AVModel,), {})

    class OnlyMap(AVModel):
        def localize(self, image, audio):
            return image.mean(dim=1)

    grid, emb = OnlyMap(0.1).localize_and_embed(torch.ones(2, 3, 4, 4), torch.ones(2, 5))
    assert grid.shape == (2, 4, 4) and emb is None


def test_unknown_method_suggests():
    with pytest.raises(UnknownNameError, match="ezvsl"):
        get_method("ezvls")


def test_ezvsl_loss_matches_naive_reference():
    torch.manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(5, 8, 3, 3), dim=1)
    a = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    tau = 0.05
    logits = torch.zeros(5, 5)
    for i in range(5):
        for j in range(5):
            logits[i, j] = max(float(v[i, :, y, x] @ a[j]) for y in range(3) for x in range(3)) / tau
    torch.testing.assert_close(mil_logits(v, a, tau), logits, rtol=1e-5, atol=1e-5)
    model = build_model("ezvsl", EZVSLConfig(**{**SMALL, "tau": tau}), audio_in_bins=32)
    loss, _ = model.loss({"v": v, "a": a})
    ref = sum(-torch.log_softmax(logits[i], 0)[i] for i in range(5)) / 5 + sum(
        -torch.log_softmax(logits[:, j], 0)[j] for j in range(5)) / 5
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


def test_slavc_logits_match_product_form():
    torch.manual_seed(2)
    f = lambda *s: torch.nn.functional.normalize(torch.randn(*s), dim=1)  # noqa: E731
    v1, v2, a1, a2 = f(4, 8, 2, 2), f(4, 8, 2, 2), f(4, 8), f(4, 8)
    tau = 0.1
    p1 = torch.softmax(torch.einsum("nchw,mc->nmhw", v1, a1).flatten(-2) / tau, dim=1)
    p2 = torch.softmax(torch.einsum("nchw,mc->nmhw", v2, a2).flatten(-2) / tau, dim=2)
    torch.testing.assert_close(slavc_logits(v1, v2, a1, a2, tau), torch.log((p1 * p2).sum(2)), rtol=1e-5, atol=1e-5)
    p1i = torch.softmax(torch.einsum("nchw,mc->nmhw", v1, a1).flatten(-2) / tau, dim=0)
    torch.testing.assert_close(slavc_logits(v1, v2, a1, a2, tau, softmax1_over="image"), torch.log((p1i * p2).sum(2)),
                               rtol=1e-5, atol=1e-5)


def test_slavc_momentum_update_and_maps():
    torch.manual_seed(3)
    model = build_model("slavc", SLAVCConfig(**SMALL, momentum=0.9), audio_in_bins=32)
    online = {k: v.clone() for k, v in model.online.state_dict().items()}
    with torch.no_grad():
        for p in model.online.parameters():
            p.add_(1.0)
    target_before = [p.clone() for p in model.target.parameters()]
    model.train()
    model(*_inputs())
    for before, p_t, p_o in zip(target_before, model.target.parameters(), model.online.parameters()):
        torch.testing.assert_close(p_t, 0.9 * before + 0.1 * p_o)
        assert not p_t.requires_grad
    assert set(online) == set(model.target.state_dict())
    model.eval()
    snapshot = [p.clone() for p in model.target.parameters()]
    model(*_inputs())  # eval forward: no momentum update
    assert all(torch.equal(a, b) for a, b in zip(snapshot, model.target.parameters()))
    image, audio = _inputs()
    mom = model.localize(image, audio)
    model.cfg = dataclasses.replace(model.cfg, map_features="online")
    onl = model.localize(image, audio)
    assert mom.shape == onl.shape and not torch.allclose(mom, onl)


def test_slavc_config_validation():
    with pytest.raises(ValueError, match="map_features"):
        SLAVCConfig(map_features="best")
    with pytest.raises(ValueError, match="loss_form"):
        SLAVCConfig(loss_form="mine")


def test_maps_upsample_fixed_range_and_ogl_rules():
    grid = torch.linspace(-1, 1, 49).view(1, 7, 7) / 0.03
    up = M.upsample(grid)
    assert up.shape == (1, 224, 224) and up.dtype == torch.float32
    ref = torch.nn.functional.interpolate(grid[None], size=(224, 224), mode="bicubic", align_corners=False)[0]
    torch.testing.assert_close(up, ref)
    fixed = M.fixed_range(grid, 0.03)
    assert float(fixed.min()) == pytest.approx(0.0, abs=1e-6) and float(fixed.max()) == pytest.approx(1.0, abs=1e-6)
    o = torch.rand(1, 224, 224) * 3
    classic = M.combine_ogl_classic(up, o)
    assert float(classic.min()) == 0.0 and float(classic.max()) == pytest.approx(1.0)
    torch.testing.assert_close(M.combine_ogl_extended(M.fixed_range(up, 0.03), o), 0.9 * M.fixed_range(up, 0.03) + 0.04 * o)
    assert torch.equal(M.minmax(torch.ones(2, 3, 3)), torch.zeros(2, 3, 3))


@pytest.mark.parametrize("path", sorted(baselines_dir().glob("*/*.toml")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_recipe_parses(path: Path):
    recipe = load_recipe(path.parent.name, path.stem)
    assert recipe.method == path.parent.name and recipe.name == path.stem
    again = parse_recipe({k: v for k, v in recipe.to_json().items() if k != "name"}, name=recipe.name)
    assert again == dataclasses.replace(recipe, source=None)


def test_published_schedules():
    """Baselines spec §3.3, §3.4, §4: epochs per training-set size, batch 128, Adam 1e-4, wd 0."""
    for method in ("ezvsl", "slavc"):
        for name in list_recipes(method):
            if name.startswith("synthetic"):
                continue
            r = load_recipe(method, name)
            assert r.schedule.epochs == (100 if name.endswith("10k") else 20), name
            assert (r.schedule.batch_size, r.optim.name, r.optim.lr, r.optim.weight_decay) == (128, "adam", 1e-4, 0.0)
            assert (r.model.visual, r.model.audio, r.model.dim, r.model.tau) == ("resnet18", "resnet18", 512, 0.03)
            assert (r.input.image_size, r.input.resize_short, r.input.audio_frontend) == (224, 246, "spectrogram")
    s = load_recipe("slavc", "vggsound-144k").model
    assert (s.visual_dropout, s.audio_dropout, s.momentum, s.map_features, s.loss_form) == (0.9, 0.0, 0.999, "momentum", "released")


def test_recipe_strictness(tmp_path):
    base = (baselines_dir() / "ezvsl" / "synthetic.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(base.replace("[optim]", "[optim]\nlearning_rate = 1"))
    with pytest.raises(RecipeError, match="unknown key.*learning_rate"):
        load_recipe("ezvsl", bad)
    bad.write_text(base.replace("dim = 128", 'dim = "128"'))
    with pytest.raises(RecipeError, match="dim: expected an integer"):
        load_recipe("ezvsl", bad)
    bad.write_text(base.replace("momentum", "x"))  # EZ-VSL has no momentum key anyway: file unchanged
    with pytest.raises(RecipeError, match="not 'slavc'"):
        load_recipe("slavc", bad)
    with pytest.raises(RecipeError, match="known: .*synthetic"):
        load_recipe("ezvsl", "no-such-recipe")
