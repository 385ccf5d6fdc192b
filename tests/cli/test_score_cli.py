"""`avsl-bench score / compare / predict / benchmarks` through the real CLI (CliRunner)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from avsl_bench.benchmarks.load import load_benchmark
from avsl_bench.cli import app
from avsl_bench.scoring.submission import write_submission

runner = CliRunner()
TINY = "synthetic-tiny-ext"


@pytest.fixture(scope="module")
def tiny():
    return load_benchmark(TINY)


def _oracle_maps(bench, noise: float, seed: int = 0) -> np.ndarray:
    """GT boxes plus noise: a good but imperfect method; negatives get weak flat maps."""
    rng = np.random.default_rng(seed)
    gts = bench.gt_maps(range(len(bench.ids)))
    maps = gts + noise * rng.standard_normal(gts.shape).astype(np.float32)
    maps[~bench.positive] *= 0.1
    return maps.astype(np.float32)


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_help_texts():
    for command in ([], ["score"], ["compare"], ["predict"], ["benchmarks"]):
        result = _invoke(*command, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_benchmarks_lists_counts():
    result = _invoke("benchmarks")
    assert result.exit_code == 0
    for text in ("vggss@1", "vggss-ext@1", "5,158", "flickr-249@1", "synthetic@1"):
        assert text in result.output


def test_score_writes_result_and_per_sample_table(tmp_path, tiny):
    preds = tmp_path / "preds.npz"
    write_submission(preds, tiny.ids, _oracle_maps(tiny, 0.3))
    out = tmp_path / "result.json"
    result = _invoke("score", preds, "--benchmark", TINY, "--bootstrap", "50", "--out", out, "--method", "oracle")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "avsl-bench/result@1" and data["protocol"] == "synthetic-tiny-ext@1"
    assert data["counts"] == {"expected": 128, "scored": 128, "missing": 0, "positives": 64, "negatives": 64,
                              "nan_ciou": 0}
    for key in ("loc_acc", "loc_acc_strict", "mean_ciou", "auc", "mse", "ap", "max_f1", "ap_full", "max_f1_full",
                "ap75"):
        entry = data["metrics"][key]
        assert 0.0 <= entry["value"] <= 1.0
        lo, hi = entry["ci95"]
        assert lo <= entry["value"] + 1e-12 and entry["value"] <= hi + 1e-12
    assert data["metrics"]["loc_acc"]["value"] > 0.5
    assert {"silent", "offscreen"} <= set(data["strata"])
    assert data["options"]["binarize"] == "top50" and data["options"]["confidence"] == "top_quarter_mean"
    assert data["submission"]["sha256"] and data["benchmark"]["ground_truth_sha256"]
    assert data["curves"]["pr"]["precision"]
    table = pd.read_parquet(tmp_path / "result.samples.parquet")
    assert len(table) == 128 and set(table["negative_type"].dropna()) == {"silent", "offscreen"}


def test_json_output_and_options_are_recorded(tmp_path, tiny):
    preds = tmp_path / "preds.npz"
    write_submission(preds, tiny.ids, _oracle_maps(tiny, 0.3)[:, ::2, ::2].copy(), compressed=True)
    result = _invoke("score", preds, "-b", TINY, "--bootstrap", "0", "--binarize", "lvs", "--resize", "bilinear",
                     "--align-corners", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["options"]["binarize"] == "lvs" and data["options"]["resize"] == "bilinear"
    assert data["options"]["align_corners"] is True and data["submission"]["map_shape"] == [112, 112]
    assert data["metrics"]["loc_acc"]["ci95"] == [None, None]


def test_compare_paired_bootstrap(tmp_path, tiny):
    paths = []
    for name, noise in (("a", 0.8), ("b", 0.2)):
        preds = tmp_path / f"{name}.npz"
        write_submission(preds, tiny.ids, _oracle_maps(tiny, noise))
        out = tmp_path / f"{name}.json"
        assert _invoke("score", preds, "-b", TINY, "--bootstrap", "20", "--out", out).exit_code == 0
        paths.append(out)
    result = _invoke("compare", *paths, "--bootstrap", "100")
    assert result.exit_code == 0, result.output
    assert "loc_acc" in result.output and "B − A" in result.output
    from avsl_bench.scoring.compare import compare_results

    diffs = compare_results(*paths, n_resamples=100)
    assert diffs["loc_acc"]["difference"] > 0
    lo, hi = diffs["loc_acc"]["ci95"]
    assert lo <= diffs["loc_acc"]["difference"] <= hi


def test_compare_refuses_different_benchmarks(tmp_path, tiny):
    preds = tmp_path / "p.npz"
    write_submission(preds, tiny.ids, _oracle_maps(tiny, 0.3))
    assert _invoke("score", preds, "-b", TINY, "--bootstrap", "0", "--out", tmp_path / "a.json").exit_code == 0
    pos = load_benchmark("synthetic-tiny")
    write_submission(tmp_path / "q.npz", pos.ids, _oracle_maps(pos, 0.3))
    assert _invoke("score", tmp_path / "q.npz", "-b", "synthetic-tiny", "--bootstrap", "0",
                   "--out", tmp_path / "b.json").exit_code == 0
    result = _invoke("compare", tmp_path / "a.json", tmp_path / "b.json")
    assert result.exit_code == 2 and "synthetic-tiny" in result.output


def test_predict_center_prior_on_synthetic(tmp_path):
    out = tmp_path / "cp.npz"
    result = _invoke("predict", "center-prior", "-b", "synthetic-tiny", "--out", out)
    assert result.exit_code == 0, result.output
    result = _invoke("score", out, "-b", "synthetic-tiny", "--bootstrap", "0", "--json")
    assert result.exit_code == 0
    assert 0.0 < json.loads(result.stdout)["metrics"]["loc_acc"]["value"] < 1.0
    assert _invoke("predict", "nonsense", "-b", "synthetic-tiny", "--out", out).exit_code == 2


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


def _bad_archives(tmp_path, bench):
    ids, good = bench.ids, _oracle_maps(bench, 0.3)[:, :8, :8].copy()
    cases = {}

    def save(name, **arrays):
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        cases[name] = path

    save("object_array", ids=np.array(ids), maps=np.array([object()] * len(ids), dtype=object))
    save("int_maps", ids=np.array(ids), maps=np.zeros((len(ids), 8, 8), np.int32))
    nan = good.copy()
    nan[3, 2, 2] = np.nan
    save("nan", ids=np.array(ids), maps=nan)
    inf = good.copy()
    inf[5, 0, 0] = np.inf
    save("inf", ids=np.array(ids), maps=inf)
    save("one_d", ids=np.array(ids), maps=np.zeros(len(ids), np.float32))
    save("four_d", ids=np.array(ids), maps=np.zeros((len(ids), 1, 8, 8), np.float32))
    save("duplicate", ids=np.array([ids[0]] + ids[:-1]), maps=good)
    save("unknown", ids=np.array(ids[:-1] + ["not_a_sample"]), maps=good)
    save("missing", ids=np.array(ids[:-3]), maps=good[:-3])
    save("ragged", **{i: np.zeros((8, 8 + (k == 7)), np.float32) for k, i in enumerate(ids)})
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, ids=np.array(ids), maps=good)
    truncated.write_bytes(truncated.read_bytes()[:-500])
    cases["truncated"] = truncated
    (tmp_path / "notzip.npz").write_bytes(b"this is not a zip file")
    cases["notzip"] = tmp_path / "notzip.npz"
    return cases


EXPECTED_WORDS = {
    "object_array": "object", "int_maps": "int", "nan": "NaN", "inf": "inf", "one_d": "3-D", "four_d": "3-D",
    "duplicate": "duplicate", "unknown": "not_a_sample", "missing": "missing", "ragged": "shape",
    "truncated": "", "notzip": "zip",
}


def test_bad_submissions_exit_2_with_one_line(tmp_path, tiny):
    out = tmp_path / "result.json"
    out.write_text("previous result\n")
    for name, path in _bad_archives(tmp_path, tiny).items():
        result = _invoke("score", path, "-b", TINY, "--bootstrap", "0", "--out", out)
        assert result.exit_code == 2, (name, result.output)
        message = result.output.strip()
        assert "\n" not in message and "Traceback" not in message, (name, message)
        assert path.name in message, (name, message)
        assert EXPECTED_WORDS[name].lower() in message.lower(), (name, message)
        assert out.read_text() == "previous result\n", name  # nothing overwritten
        assert not list(tmp_path.glob(".result*.tmp")), name


def test_sample_ids_named_in_errors(tmp_path, tiny):
    cases = _bad_archives(tmp_path, tiny)
    result = _invoke("score", cases["nan"], "-b", TINY, "--bootstrap", "0")
    assert tiny.ids[3] in result.output
    result = _invoke("score", cases["duplicate"], "-b", TINY, "--bootstrap", "0")
    assert tiny.ids[0] in result.output


def test_allow_missing_counts_failures(tmp_path, tiny):
    cases = _bad_archives(tmp_path, tiny)
    result = _invoke("score", cases["missing"], "-b", TINY, "--bootstrap", "0", "--allow-missing", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"]["missing"] == 3 and data["counts"]["scored"] == 125
    assert data["options"]["allow_missing"] is True


def test_oversized_declared_archive_is_refused(tmp_path, tiny, monkeypatch):
    import avsl_bench.scoring.submission as submission

    preds = tmp_path / "big.npz"
    write_submission(preds, tiny.ids, _oracle_maps(tiny, 0.3))
    original = submission.open_submission
    monkeypatch.setattr(submission, "open_submission",
                        lambda path, **kw: original(path, **{**kw, "max_uncompressed_bytes": 1 << 20}))
    import avsl_bench.scoring.score as score_module

    monkeypatch.setattr(score_module, "open_submission", submission.open_submission)
    result = _invoke("score", preds, "-b", TINY, "--bootstrap", "0")
    assert result.exit_code == 2 and "big.npz" in result.output
    assert zipfile.is_zipfile(preds)


# ---------------------------------------------------------------- cross-modal retrieval (--retrieval)


def _class_embeddings(bench, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, audio): a class prototype plus noise per sample (negatives: their frame's class, or random)."""
    rng = np.random.default_rng(seed)
    names = sorted({c for c in bench.classes if c is not None})
    proto = rng.standard_normal((len(names), 16))
    base = np.stack([proto[names.index(c)] if c is not None else rng.standard_normal(16) for c in bench.classes])
    return ((base + noise * rng.standard_normal(base.shape)).astype(np.float32),
            (base + noise * rng.standard_normal(base.shape)).astype(np.float32))


def test_score_retrieval_end_to_end(tmp_path, tiny):
    from avsl_bench.scoring.retrieval import cross_modal_recall

    image, audio = _class_embeddings(tiny, 0.8)
    order = np.random.default_rng(1).permutation(len(tiny.ids))  # archive order ≠ benchmark order
    preds = tmp_path / "preds.npz"
    write_submission(preds, [tiny.ids[i] for i in order], _oracle_maps(tiny, 0.3)[order],
                     embeddings=(image[order], audio[order]))
    out = tmp_path / "result.json"
    result = _invoke("score", preds, "-b", TINY, "--bootstrap", "20", "--retrieval", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    block = data["retrieval"]
    rows = {}  # metric name -> value cell, from the one table (retrieval rows beside the metrics)
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3:
            rows[cells[0]] = cells[1]
    assert "loc_acc" in rows and "64 queries, relevant = same class" in result.output
    for direction, label in (("audio_to_image", "A→I"), ("image_to_audio", "I→A")):
        for k in (1, 5, 10):
            assert rows[f"retrieval {label} R@{k}"] == f"{100 * block[direction][f'r{k}']:.2f}"
    assert block["queries"] == 64 and block["embedding_dim"] == 16 and block["classes"] == 8
    assert block["excluded"] == {"negatives": 64, "positives_without_class": 0}
    assert "own pair" in block["convention"]
    positives = np.flatnonzero(tiny.positive)
    expected = cross_modal_recall(audio[positives], image[positives], [tiny.classes[i] for i in positives])
    for direction in ("audio_to_image", "image_to_audio"):
        by_k = block[direction]
        assert by_k == {f"r{k}": v for k, v in expected[direction].items()}
        assert 0.0 < by_k["r1"] <= by_k["r5"] <= by_k["r10"] <= 1.0
    # without the option nothing changes
    plain = _invoke("score", preds, "-b", TINY, "--bootstrap", "20", "--json")
    assert plain.exit_code == 0, plain.output
    plain_data = json.loads(plain.stdout)
    assert "retrieval" not in plain_data and "retrieval" not in plain.stdout
    assert plain_data["metrics"] == data["metrics"] and plain_data["options"] == data["options"]


def test_score_retrieval_errors(tmp_path, tiny):
    image, audio = _class_embeddings(tiny, 0.5)
    maps = _oracle_maps(tiny, 0.3)[:, :8, :8].copy()
    bare = tmp_path / "bare.npz"
    write_submission(bare, tiny.ids, maps)
    nan = tmp_path / "nan.npz"
    np.savez(nan, ids=np.array(tiny.ids), maps=maps, image_embeddings=image,
             audio_embeddings=np.where(np.arange(len(tiny.ids))[:, None] == 5, np.nan, audio))
    missing = tmp_path / "missing.npz"
    write_submission(missing, tiny.ids[1:], maps[1:], embeddings=(image[1:], audio[1:]))
    cases = {bare: "no embeddings", nan: "NaN", missing: "missing"}
    for path, words in cases.items():
        result = _invoke("score", path, "-b", TINY, "--bootstrap", "0", "--retrieval", "--allow-missing")
        assert result.exit_code == 2, (path.name, result.output)
        message = result.output.strip()
        assert "\n" not in message and "Traceback" not in message and path.name in message, message
        assert words in message, message
    assert repr(tiny.ids[5]) in _invoke("score", nan, "-b", TINY, "--bootstrap", "0").output  # always validated
    assert _invoke("score", bare, "-b", TINY, "--bootstrap", "0").exit_code == 0


def test_predict_writes_embeddings_for_ezvsl(tmp_path):
    from avsl_bench.scoring.retrieval import cross_modal_recall
    from avsl_bench.train.loop import train
    from tests.train.conftest import tiny_recipe, write_split

    train_dir = write_split(tmp_path / "train", "train", 16)  # one step: the weights need not be good
    test_dir = write_split(tmp_path / "test", "test", 12, seed=1)
    recipe = tiny_recipe(tmp_path / "ezvsl.toml", "ezvsl")
    train("ezvsl", train_dir, tmp_path / "run", recipe, device="cpu", seed=0, epochs=1)
    out = tmp_path / "preds.npz"
    result = _invoke("predict", tmp_path / "run", "--data", test_dir, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "preds.npz.json").read_text())
    assert summary["embeddings"] == {"dim": 16, "image": "image_embeddings", "audio": "audio_embeddings"}
    from avsl_bench.scoring.submission import open_submission

    with open_submission(out) as sub:
        assert sub.embedding_dim == 16
        emb = sub.read_embeddings()
        ids = sub.ids
    assert emb.image.shape == emb.audio.shape == (12, 16)
    np.testing.assert_allclose(np.linalg.norm(emb.audio, axis=1), 1.0, atol=1e-5)  # normalised a
    assert np.abs(emb.image).max() <= 1.0 + 1e-5  # channel-wise max over locations of unit vectors
    labels = [int(key.rsplit("_", 1)[1]) % 4 for key in ids]  # the fixture's class of sample i is i % 4
    recall = cross_modal_recall(emb.audio, emb.image, labels)
    for by_k in recall.values():  # an untrained model: only the bounds are known
        assert 0.0 <= by_k[1] <= by_k[5] <= by_k[10] <= 1.0


def test_model_embeddings_contract():
    import torch

    from avsl_bench.models import build_model, get_method

    small = dict(visual="small_cnn", visual_widths=(8, 8, 8, 16, 16), visual_strides=(2, 2, 1, 2, 1),
                 visual_weights="", audio="conv1d", audio_widths=(16, 16, 16), dim=16, tau=0.07)
    g = torch.Generator().manual_seed(0)
    image, audio = torch.randn(3, 3, 32, 32, generator=g), torch.randn(3, 32, 50, generator=g)
    for method in ("ezvsl", "jsa", "slavc"):
        torch.manual_seed(0)
        model = build_model(method, get_method(method).config_cls(**small), audio_in_bins=32).eval()
        emb = model.embeddings(image, audio)
        if method == "slavc":
            assert emb is None  # not defined: predict writes none
            continue
        v, a = emb
        assert v.shape == a.shape == (3, 16) and torch.isfinite(v).all() and torch.isfinite(a).all()
        if method == "jsa":  # target slots ŝ_v⁰, ŝ_a⁰ are unit vectors
            assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
        else:  # EZ-VSL: spatial max-pool of the normalised visual map
            assert torch.equal(v, model.embed_visual(image).amax(dim=(2, 3)))
        assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
        assert torch.equal(v, model.embeddings(image, audio)[0])  # eval: deterministic
