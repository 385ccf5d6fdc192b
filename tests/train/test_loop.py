"""The training loop end to end on fixture shards, prediction archives, and DDP gradient equivalence."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch

from avsl_bench.errors import DataFileError, UsageError
from avsl_bench.scoring.submission import open_submission
from avsl_bench.train.controls import control_pairs
from avsl_bench.train.data import LeakageError, ShardIndex
from avsl_bench.train.loop import leakage_flag, train
from avsl_bench.train.predict import load_run, method_info, predict

from .conftest import tiny_recipe


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fixture_shards):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method in ("ezvsl", "slavc"):
        recipe = tiny_recipe(root / f"{method}.toml", method, cache=method == "slavc")
        out[method] = (root / method, train(method, fixture_shards["train"], root / method, recipe, device="cpu",
                                            seed=0, save_every=1))
    return out


@pytest.mark.parametrize("method", ["ezvsl", "slavc"])
def test_run_json_and_checkpoints(runs, method):
    run_dir, run = runs[method]
    assert json.loads((run_dir / "run.json").read_text()) == run
    assert run["method"] == method and run["checkpoint_selection"] == "final" and run["seed"] == 0
    assert run["epochs"] == 2 and run["steps"] == 2 * (64 // 16)
    assert run["recipe"]["resolved"]["schedule"]["batch_size"] == 16
    assert run["recipe"]["resolved"]["schedule"]["save_every"] == 1 and run["recipe"]["schedule_overridden"] is False
    assert run["training_data"]["samples"] == 64 and run["training_data"]["splits"] == {"train": 64}
    assert len(run["training_data"]["keys_sha256"]) == 64 and run["training_data"]["leaky"] is None
    assert run["device"]["type"] == "cpu" and run["device"]["world_size"] == 1
    assert run["tool"]["name"] == "avsl-bench" and run["timing"]["samples_per_s"] > 0
    assert [c["file"] for c in run["epoch_checkpoints"]] == ["epoch_001.pt"]  # the last epoch is final.pt
    assert (run_dir / "final.pt").is_file() and len(run["history"]) == 2
    model, recipe, _ = load_run(run_dir)
    assert not model.training and recipe.method == method


def test_training_is_deterministic(runs, fixture_shards, tmp_path):
    run_dir, run = runs["ezvsl"]
    recipe = tiny_recipe(tmp_path / "ezvsl.toml", "ezvsl")
    again = train("ezvsl", fixture_shards["train"], tmp_path / "again", recipe, device="cpu", seed=0, save_every=1)
    a = torch.load(run_dir / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "again" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again["history"][-1]["loss"] == run["history"][-1]["loss"]


def test_train_refuses_test_data_and_reuse(fixture_shards, tmp_path, runs):
    recipe = tiny_recipe(tmp_path / "ezvsl.toml", "ezvsl")
    with pytest.raises(LeakageError):
        train("ezvsl", fixture_shards["test"], tmp_path / "x", recipe, device="cpu")
    assert not (tmp_path / "x" / "final.pt").exists()
    with pytest.raises(UsageError, match="exists"):
        train("ezvsl", fixture_shards["train"], runs["ezvsl"][0], recipe, device="cpu")


@pytest.mark.parametrize("method", ["ezvsl", "slavc"])
def test_predict_writes_fixed_range_maps(runs, fixture_shards, tmp_path, method):
    run_dir, run = runs[method]
    out = tmp_path / "preds.npz"
    summary = predict(run_dir, [fixture_shards["test"], fixture_shards["test-neg"]], out, workers=0)
    assert summary["samples"] == 32 and summary["map"] == "fixed_range" and summary["scores"] is None
    with open_submission(out) as sub:
        assert sub.shape == (224, 224) and str(sub.dtype) == "float32" and sub.scores is None
        assert sorted(sub.ids) == sorted(ShardIndex.build([fixture_shards["test"], fixture_shards["test-neg"]]).keys)
    maps = np.load(out)["maps"]
    assert maps.min() > -0.1 and maps.max() < 1.1  # Â = (τA + 1)/2 (bicubic may overshoot a little)
    info = method_info(run_dir)
    assert info.checkpoint_selection == "final" and info.checkpoint_sha256 == run["checkpoint"]["sha256"]


def test_predict_with_ogl_and_controls(runs, fixture_shards, tmp_path):
    run_dir, _ = runs["ezvsl"]
    with pytest.warns(RuntimeWarning, match="RANDOM INIT"):
        summary = predict(run_dir, [fixture_shards["test"], fixture_shards["test-neg"]], tmp_path / "o.npz", ogl=True,
                          workers=0)
    assert summary["map"] == "ogl_extended" and summary["ogl_weights"]["status"] == "missing_random_init"
    with pytest.warns(RuntimeWarning):
        classic = predict(run_dir, fixture_shards["test"], tmp_path / "c.npz", ogl=True, workers=0)
    assert classic["map"] == "ogl_classic"
    maps = np.load(tmp_path / "c.npz")["maps"]
    assert np.allclose(maps.reshape(len(maps), -1).min(1), 0) and np.allclose(maps.reshape(len(maps), -1).max(1), 1)
    index = ShardIndex.build(fixture_shards["test"])
    pairs = control_pairs(index, "distractor")
    meta = {s.key: s.meta for s in index.samples}
    assert pairs and all(meta[a]["class"] in meta[f]["frame_classes"] and meta[a]["class"] != meta[f]["class"]
                         for f, a in pairs.items())
    shuffle = control_pairs(index, "shuffle")
    assert sorted(shuffle) == sorted(shuffle.values()) == sorted(index.keys) and all(k != v for k, v in shuffle.items())


def test_predict_refuses_missing_or_replaced_checkpoint(runs, fixture_shards, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(runs["ezvsl"][0], run_dir)
    (run_dir / "final.pt").unlink()
    with pytest.raises(DataFileError, match="checkpoint missing"):
        predict(run_dir, fixture_shards["test"], tmp_path / "p.npz")
    shutil.copy(run_dir / "epoch_001.pt", run_dir / "final.pt")
    with pytest.raises(DataFileError, match="sha256"):
        predict(run_dir, fixture_shards["test"], tmp_path / "p.npz")


def test_leakage_flag():
    assert leakage_flag(["vggsound-144k"]) is True
    assert leakage_flag(["vggsound-144k-noleak"]) is False
    assert leakage_flag(["synthetic"]) is False
    assert leakage_flag(["something"]) is None


# ------------------------------------------------------------------------------- DDP (gloo, 2 processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    import torch.distributed as dist

    from avsl_bench.train.distributed import gather_embeddings

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model, image, audio = _ddp_setup()
    net = torch.nn.parallel.DistributedDataParallel(model)
    half = len(image) // world
    sl = slice(rank * half, (rank + 1) * half)
    emb = net(image[sl], audio[sl])
    loss, _ = model.loss(gather_embeddings(emb))
    loss.backward()
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()}}, path)
    dist.destroy_process_group()


def _ddp_setup():
    from avsl_bench.models import build_model
    from avsl_bench.models.ezvsl import EZVSLConfig

    torch.manual_seed(0)
    cfg = EZVSLConfig(visual="small_cnn", visual_widths=(4, 4, 4, 8, 8), visual_strides=(2, 2, 1, 2, 1), visual_weights="",
                      audio="conv1d", audio_widths=(8, 8, 8), dim=8, tau=0.1)
    model = build_model("ezvsl", cfg, audio_in_bins=16).eval()  # eval: BatchNorm without batch statistics
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(8, 3, 16, 16, generator=g), torch.randn(8, 16, 20, generator=g)


def test_ddp_all_gather_gives_the_global_batch_gradient(tmp_path):
    import torch.multiprocessing as mp

    path = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    got = torch.load(path, weights_only=True)
    model, image, audio = _ddp_setup()
    loss, _ = model.loss(model(image, audio))
    loss.backward()
    torch.testing.assert_close(got["loss"], loss.detach())
    for name, p in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------- semi-supervised (§3.7)

SEMISUP_MODEL = """b_visual = "small_cnn"
b_visual_widths = [8, 16, 16, 16, 16]
b_visual_strides = [2, 2, 2, 1, 1]
b_audio = "spec_cnn"
b_audio_widths = [8, 16]
b_audio_strides = [2, 2]
"""


def semisup_recipe(path, method: str, *, warmup: int = 1, labelled_batch: int = 8, cache: bool = True):
    from .conftest import TINY_RECIPE

    extra = SEMISUP_MODEL if method in ("dmt", "xpl") else ""
    text = TINY_RECIPE.format(method=method, extra=extra, cache="true" if cache else "false")
    schedule = f"batch_size = 16\nwarmup_epochs = {warmup}\nlabelled_batch_size = {labelled_batch}\n"
    path.write_text(text.replace("batch_size = 16\n", schedule))
    return path


@pytest.fixture(scope="module")
def labelled_shards(tmp_path_factory, fixture_shards):
    from .test_data import mark_labelled

    return mark_labelled(fixture_shards["train"], tmp_path_factory.mktemp("labelled") / "train", every=4)


@pytest.mark.parametrize("method", ["dmt", "xpl"])
def test_semisup_methods_train_in_two_phases_and_predict_unit_maps(method, labelled_shards, fixture_shards, tmp_path):
    recipe = semisup_recipe(tmp_path / f"{method}.toml", method)
    run = train(method, labelled_shards, tmp_path / "run", recipe, device="cpu", seed=0)
    warm, unl = run["history"]
    assert set(warm) - {"epoch", "steps", "lr", "seconds"} == {"loss", "loss_sup_a", "loss_sup_b"}  # labelled only
    assert {"loss_unsup_a", "loss_unsup_b"} <= set(unl) and all(np.isfinite(v) for v in unl.values())
    assert run["steps"] == 16 // 8 + 48 // 16  # warm-up: 16 labelled / 8; then 48 unlabelled / 16 (+ 8 labelled)
    data = run["training_data"]
    assert data["labelled"] == 16 and data["samples_per_epoch_each"] == [16, 3 * 24]
    assert run["recipe"]["resolved"]["schedule"]["warmup_epochs"] == 1 and run["checkpoint_selection"] == "final"
    model, _, _ = load_run(tmp_path / "run")
    assert model.map_range == "unit" and not model.training
    summary = predict(tmp_path / "run", fixture_shards["test"], tmp_path / "p.npz", workers=0)
    assert summary["map"] == "fixed_range" and summary["samples"] == 24
    maps = np.load(tmp_path / "p.npz")["maps"]
    assert maps.min() > -0.1 and maps.max() < 1.1  # probabilities (bicubic may overshoot a little)
    again = train(method, labelled_shards, tmp_path / "again", recipe, device="cpu", seed=0)
    assert again["history"][-1]["loss"] == run["history"][-1]["loss"]  # deterministic


def test_semisup_training_refuses_test_data_and_mismatched_setups(labelled_shards, fixture_shards, tmp_path):
    recipe = semisup_recipe(tmp_path / "dmt.toml", "dmt")
    for split in ("test", "test-neg"):
        with pytest.raises(LeakageError):
            train("dmt", [labelled_shards, fixture_shards[split]], tmp_path / split, recipe, device="cpu")
    with pytest.raises(UsageError, match="labelled samples"):  # shards without `"labelled": true`
        train("dmt", fixture_shards["train"], tmp_path / "nolab", recipe, device="cpu")
    with pytest.raises(UsageError, match="semi-supervised"):  # a semi-supervised schedule for EZ-VSL
        train("ezvsl", labelled_shards, tmp_path / "ez", semisup_recipe(tmp_path / "ez.toml", "ezvsl"), device="cpu")
    with pytest.raises(UsageError, match="semi-supervised"):  # DMT without its schedule
        train("dmt", labelled_shards, tmp_path / "d", semisup_recipe(tmp_path / "d.toml", "dmt", warmup=0,
                                                                      labelled_batch=0), device="cpu")  # fmt: skip


def _semisup_ddp_setup():
    from avsl_bench.models import build_model
    from avsl_bench.models.xpl import XPLConfig

    torch.manual_seed(0)
    cfg = XPLConfig(visual="small_cnn", visual_widths=(4, 4, 4, 8, 8), visual_strides=(2, 2, 1, 2, 1),
                    visual_weights="", audio="conv1d", audio_widths=(8, 8, 8), dim=8, tau=0.1, b_audio="spec_cnn",
                    b_audio_widths=(4, 8), b_audio_strides=(2, 2), pearson_threshold=-1.0, ramp_epochs=0,
                    jitter_a=(0.0, 0.0, 0.0), jitter_b=(0.0, 0.0, 0.0))  # fmt: skip
    model = build_model("xpl", cfg, audio_in_bins=16).eval()  # eval: BatchNorm without batch statistics
    model.start_epoch(1, warmup=False)
    g = torch.Generator().manual_seed(1)
    lab = torch.tensor([True, False, False, False, False, True, False, False])
    extras = {"mask": (torch.rand(8, 16, 16, generator=g) > 0.5).float(), "labelled": lab, "index": torch.arange(8)}
    return model, torch.randn(8, 3, 16, 16, generator=g), torch.randn(8, 16, 20, generator=g), extras


def _semisup_ddp_worker(rank: int, world: int, port: int, path: str) -> None:
    import torch.distributed as dist

    from avsl_bench.train.distributed import gather_embeddings

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model, image, audio, extras = _semisup_ddp_setup()
    net = torch.nn.parallel.DistributedDataParallel(model)
    sl = slice(rank * 4, (rank + 1) * 4)
    emb = net(image[sl], audio[sl], **{k: v[sl] for k, v in extras.items()})
    loss, _ = model.loss(gather_embeddings(emb))
    loss.backward()
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()}}, path)
    dist.destroy_process_group()


def test_semisup_ddp_gathers_targets_and_gives_the_global_batch_gradient(tmp_path):
    import torch.multiprocessing as mp

    path = str(tmp_path / "ddp.pt")
    mp.spawn(_semisup_ddp_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    got = torch.load(path, weights_only=True)
    model, image, audio, extras = _semisup_ddp_setup()
    loss, _ = model.loss(model(image, audio, **extras))
    loss.backward()
    torch.testing.assert_close(got["loss"], loss.detach())
    for name, p in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-4, atol=1e-6)


class _FakeSampler:
    """Epoch lengths 2, 2, 3 (a warm-up phase shorter than the rest)."""

    lengths = (2, 2, 3)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.lengths[self.epoch]


def test_lr_decay_constant_and_cosine_over_the_whole_schedule():
    import dataclasses
    import math

    from avsl_bench.models.recipes import ScheduleConfig
    from avsl_bench.train.loop import _lr_factor

    schedule = ScheduleConfig(epochs=3, batch_size=4)
    assert [_lr_factor(schedule, _FakeSampler())(s) for s in range(7)] == [1.0] * 7
    cosine = _lr_factor(dataclasses.replace(schedule, lr_decay="cosine"), _FakeSampler())
    factors = [cosine(s) for s in range(8)]
    assert factors[0] == 1.0 and factors[7] == pytest.approx(0.0, abs=1e-12)  # 7 steps in all
    assert factors[6] > 0 and all(a > b for a, b in zip(factors, factors[1:]))
    assert factors[3] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 7)))
    with pytest.raises(ValueError, match="lr_decay"):
        ScheduleConfig(epochs=3, lr_decay="linear")


def test_weight_ema_is_what_checkpoints_hold_and_leaves_training_alone(runs, fixture_shards, tmp_path):
    """`schedule.weight_ema`: the same training trajectory (losses), checkpoints holding the running average; a
    vanishing m gives the last step's weights back."""
    from avsl_bench.models.recipes import ScheduleConfig

    run_dir, plain = runs["ezvsl"]
    base = tiny_recipe(tmp_path / "base.toml", "ezvsl").read_text()
    finals = {}
    for m in (0.5, 1e-12):
        recipe = tmp_path / f"ema{m}.toml"
        recipe.write_text(base.replace("[schedule]\n", f"[schedule]\nweight_ema = {m}\n"))
        run = train("ezvsl", fixture_shards["train"], tmp_path / f"ema{m}", recipe, device="cpu", seed=0)
        assert run["recipe"]["resolved"]["schedule"]["weight_ema"] == m
        assert [h["loss"] for h in run["history"]] == [h["loss"] for h in plain["history"]]
        finals[m] = torch.load(tmp_path / f"ema{m}" / "final.pt", weights_only=True)["state_dict"]
    last = torch.load(run_dir / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(finals[1e-12][k].float(), last[k].float(), atol=1e-6) for k in last)
    weights = [k for k in last if last[k].is_floating_point() and "running" not in k]
    assert any(not torch.allclose(finals[0.5][k], last[k]) for k in weights)
    assert all(torch.equal(finals[0.5][k], last[k]) for k in last if not last[k].is_floating_point())
    with pytest.raises(ValueError, match="weight_ema"):
        ScheduleConfig(epochs=3, weight_ema=1.0)


@pytest.mark.parametrize("m", [0.5, 0.98, 0.999])
def test_debiased_momentum_gives_the_bias_corrected_average(m):
    from avsl_bench.train.loop import debiased_momentum

    thetas = np.random.default_rng(7).normal(size=40)
    running = 123.0  # the initial weights: no share in the result
    for step, theta in enumerate(thetas, start=1):
        k = debiased_momentum(m, step)
        running = k * running + (1 - k) * theta
        t = np.arange(1, step + 1)
        closed = ((1 - m) * m ** (step - t) * thetas[:step]).sum() / (1 - m**step)
        assert running == pytest.approx(closed, rel=1e-9, abs=1e-12)
    assert debiased_momentum(m, 1) == 0.0
