"""Training lists: manifests, the §5.3 leakage audit, `-noleak` filtering and the leak warning."""

from __future__ import annotations

import re
import shutil

import pytest
from rich.console import Console

from avsl_bench.benchmarks import training
from avsl_bench.benchmarks.lists import read_id_list
from avsl_bench.benchmarks.training import (
    audit,
    get_training_spec,
    leak_warning,
    leakage_files,
    leakage_references,
    leakage_table,
    load_training_set,
    parse_training_spec,
    read_list_file,
    render_audit_table,
    training_manifests_dir,
    training_names,
    training_registry,
)
from avsl_bench.benchmarks.upstream import git_blob_id, resolve
from avsl_bench.errors import ChecksumError, DataFileError, UnknownNameError
from tests.conftest import UPSTREAM

# data spec §1.1 / §1.2: repository commits and file pins.
COMMITS = {
    "hche11/VGGSound": "9bbc7491c054a203e53584c0065df336e1322bb7",
    "hche11/Localizing-Visual-Sounds-the-Hard-Way": "8fe8cbbf810e804cf8cc9b244bb5d77ec8aa8315",
    "stoneMo/EZ-VSL": "95ff5bff30191fed11856699a7669419fa59b356",
    "stoneMo/SLAVC": "05b429c6f474ca6f1070d08e1d0142948d1625bf",
    "ardasnck/learning_to_localize_sound_source": "89205e9b0af21be847d29deeaded140604e77229",
}
PINS = {
    "vgg_test": ("hche11/VGGSound", "data/test.csv",
                 "0b2215dc3786fbb223aa06a2162491099d89cf080ac31b16bb3a72368fbaa24d"),
    "vggss_test": ("hche11/Localizing-Visual-Sounds-the-Hard-Way", "metadata/vggss_test.csv",
                   "971081929d45caf21a148a6ca968822d96e8316331d0cc0bafb1783acb4d2c35"),
    "vggss_ext_neg": ("stoneMo/SLAVC", "metadata/vggss_test_plus_silent.csv",
                      "905a009428e16d1108e5af112d8e682dbe1702a2ed897b3d56753ff587018e4e"),
    "flickr_test249": ("hche11/Localizing-Visual-Sounds-the-Hard-Way", "metadata/flickr_test.csv",
                       "faf5465bdb991cfb7506ccadef64dfea9e9bceb47e895d0e4dbdc2a0ca622871"),
    "flickr_test250": ("stoneMo/SLAVC", "metadata/flickr_test.csv",
                       "e5c04bd722fc73a2daafcdafe9e10068d198c5df168300db4e05aa61b4ef71ed"),
    "senocak_test": ("ardasnck/learning_to_localize_sound_source", "test_list.txt",
                     "7134e3d58fffd0232cde2674a1d387c0c1e4d2844b153d894a47d1c6865567cd"),
    "senocak_144k": ("ardasnck/learning_to_localize_sound_source", "Flickr_train_144k.txt",
                     "1df6592386ca744ae4663a1372e493adfb1ec034bfc20b2f5b11c5ca2160e44e"),
    "vggss_10k": ("stoneMo/EZ-VSL", "metadata/vggss_10k.txt",
                  "9a19023b17aedc79001bbcb69ccd5c96f6af2f7b8ef1b12fa92a76050a0ae43e"),
    "vggss_144k": ("stoneMo/EZ-VSL", "metadata/vggss_144k.txt",
                   "a9a02f704e8bb2d746c43860e5830e7589e9311de5bd067459484ec5bb4bd529"),
    "vggss_heard": ("stoneMo/EZ-VSL", "metadata/vggss_heard.txt",
                    "db900e2df283236b3e5485ae95a4a09f0904f8da184fc7da6f1ab1d24f6c5aa2"),
    "flickr_10k": ("stoneMo/EZ-VSL", "metadata/flickr_10k.txt",
                   "773429321cd7690710660446b4aab9157ef75fe9a1f6b788649989a8066a77b1"),
    "flickr_144k": ("stoneMo/EZ-VSL", "metadata/flickr_144k.txt",
                    "5368914670a8e41f27591a7d6818abe74132aefd199a2a3b1861aeafa2e20b99"),
    "flickr_sup_train": ("stoneMo/SLAVC", "metadata/flickr_sup_train.txt",
                         "af87c3a35d584d8792686fe8de5b21adaf331330b6e2b80c7d4998f60d4f9030"),
    "vggsound_csv": ("hche11/VGGSound", "data/vggsound.csv", None),
}
VGGSOUND_CSV_BLOB = "53da0dc492b8a3fadf770f0f175cef1e652c0447"

# data spec §5.3: list -> (rows, in test, of which VGG-SS, same video other segment, -noleak rows)
TABLE_5_3 = {
    "vggsound-144k": (144_000, 11_163, 3_709, 5, 132_837),
    "vggsound-10k": (10_000, 787, 238, 0, 9_213),
    "vggsound-heard": (59_468, 0, 0, 2, 59_468),
    "flickr-144k": (144_000, 20, None, None, 143_980),
    "flickr-10k": (10_000, 1, None, None, 9_999),
    "flickr-sup-train": (4_750, 0, None, None, 4_750),
}


@pytest.fixture(scope="module")
def mirror():
    if UPSTREAM is None:
        pytest.skip("upstream mirror not available (set AVSL_BENCH_UPSTREAM)")
    return UPSTREAM


@pytest.fixture(scope="module")
def reports(mirror):
    return {r.list_name: r for r in leakage_table(mirror=mirror)}


def _all_list_files():
    files = dict(leakage_files())
    for name in training_names(noleak=False):
        spec = training_registry().get(name)
        files[spec.list_file.file_id] = spec.list_file
    return files


# ----------------------------------------------------------------------------------------------- manifests


def test_training_names_and_noleak_variants():
    bases = {"vggsound-10k", "vggsound-144k", "vggsound-heard", "vggsound", "flickr-10k", "flickr-144k",
             "flickr-sup-train"}
    assert set(training_names(noleak=False)) == bases
    assert set(training_names()) == bases | {f"{b}-noleak" for b in bases}
    spec, noleak = get_training_spec("vggsound-144k-noleak")
    assert (spec.name, spec.list_file.file_id, spec.leakage, noleak) == ("vggsound-144k", "vggss_144k", "vggss", True)
    with pytest.raises(UnknownNameError, match="did you mean"):
        get_training_spec("vggsound-144")


def test_every_pin_matches_the_data_spec():
    files = _all_list_files()
    assert set(files) == set(PINS)
    for fid, (repo, path, sha) in PINS.items():
        up = files[fid].upstream
        assert (up.repo, up.commit, up.path, up.sha256) == (repo, COMMITS[repo], path, sha), fid
        assert up.url == f"https://raw.githubusercontent.com/{repo}/{COMMITS[repo]}/{path}"
        assert up.vendorable == (not repo.startswith("ardasnck/")), fid
    csv = files["vggsound_csv"]
    assert (csv.upstream.git_blob, csv.format, csv.size) == (VGGSOUND_CSV_BLOB, "vggsound_csv", 6_453_631)
    assert training_registry().get("vggsound").split == "train"


def test_leakage_references_follow_section_5_3():
    refs = leakage_references()
    assert [f.file_id for f in refs["vggss"].drop] == ["vgg_test", "vggss_ext_neg"]
    assert [f.file_id for f in refs["vggss"].test] == ["vgg_test"]
    assert refs["vggss"].benchmark.file_id == "vggss_test"
    assert [f.file_id for f in refs["flickr"].drop] == ["flickr_test249", "flickr_test250", "senocak_test"]
    assert refs["flickr"].benchmark is None


def test_manifest_validation(tmp_path):
    good = (training_manifests_dir() / "vggsound-10k.toml").read_text()
    bad = tmp_path / "x.toml"
    bad.write_text(good + "bogus = 1\n")
    with pytest.raises(DataFileError, match="unknown keys"):
        parse_training_spec(bad)
    bad.write_text(good.replace('sha256 = "9a19', 'sha256 = "zz19'))
    with pytest.raises(DataFileError, match="sha256"):
        parse_training_spec(bad)
    bad.write_text(good.replace("https://raw.githubusercontent.com/stoneMo/EZ-VSL/95ff", "https://example.com/x/95ff"))
    with pytest.raises(DataFileError, match="raw.githubusercontent.com"):
        parse_training_spec(bad)


# --------------------------------------------------------------------------------------------- §5.3 table


@pytest.mark.parametrize("name", sorted(TABLE_5_3))
def test_section_5_3_table(reports, name):
    rows, in_test, in_vggss, same_video, noleak = TABLE_5_3[name]
    r = reports[name]
    assert (r.rows, r.unique, r.in_test, r.in_benchmark, r.same_video_other_segment, r.noleak_rows) == (
        rows, rows, in_test, in_vggss, same_video, noleak)
    assert r.dropped == rows - noleak == len(r.leaked_ids)
    if r.against == "flickr":  # the same count against each of the three Flickr test lists
        assert r.overlaps == {"flickr_test249": in_test, "flickr_test250": in_test, "senocak_test": in_test}


def test_vggss_144k_holds_72_percent_of_vggss(reports):
    r = reports["vggsound-144k"]
    assert r.benchmark_size == 5158 and round(100 * r.benchmark_fraction) == 72
    assert r.overlaps["vgg_test"] == 11_163 and r.overlaps["vggss_test"] == 3_709


def test_every_vggss_clip_is_in_vggsound_test(mirror):
    files = leakage_files()
    vggss = read_id_list(resolve(files["vggss_test"].upstream, mirror), "vggsound")
    r = audit(vggss, "vggss", mirror=mirror, name="vggss_test")
    assert r.rows == r.in_test == r.in_benchmark == 5158 and r.noleak_rows == 0


def test_list_relations(mirror):
    names = ("vggsound-10k", "vggsound-144k", "flickr-10k", "flickr-144k")
    ids = {n: load_training_set(n, mirror=mirror).ids for n in names}
    assert len(set(ids["vggsound-10k"]) & set(ids["vggsound-144k"])) == 7_211
    assert not set(ids["vggsound-10k"]) <= set(ids["vggsound-144k"])
    assert set(ids["flickr-10k"]) <= set(ids["flickr-144k"])
    senocak = resolve(leakage_files()["senocak_144k"].upstream, mirror)
    r = audit(senocak, "flickr", mirror=mirror)
    assert (r.rows, r.in_test, r.noleak_rows) == (144_000, 0, 144_000)
    assert len(set(read_id_list(senocak, "flickr")) & set(ids["flickr-144k"])) == 10_188


# ------------------------------------------------------------------------------------------------ -noleak


@pytest.mark.parametrize("name", ["vggsound-144k", "vggsound-10k", "flickr-144k", "flickr-10k"])
def test_noleak_drops_every_reference_id_in_list_order(mirror, name):
    legacy = load_training_set(name, mirror=mirror)
    clean = load_training_set(f"{name}-noleak", mirror=mirror)
    assert clean.noleak and not legacy.noleak and clean.warning is None
    assert len(clean.ids) == TABLE_5_3[name][4] == legacy.audit.noleak_rows
    drop = set()
    for f in leakage_references()[legacy.spec.leakage].drop:
        drop |= set(read_list_file(f, resolve(f.upstream, mirror), legacy.dataset)[0])
    assert not drop & set(clean.ids)
    assert [i for i in legacy.ids if i not in drop] == list(clean.ids)  # order kept, no top-up
    assert clean.list_sha256 == legacy.list_sha256 == legacy.spec.list_file.upstream.sha256
    drop_files = {f.file_id for f in leakage_references()[legacy.spec.leakage].drop}
    assert set(clean.file_sha256) >= {legacy.spec.list_file.file_id, *drop_files}


def test_noleak_of_a_clean_list_is_the_list(mirror):
    heard = load_training_set("vggsound-heard", mirror=mirror)
    assert load_training_set("vggsound-heard-noleak", mirror=mirror).ids == heard.ids
    assert len(heard.ids) == 59_468 and heard.warning is None


# ------------------------------------------------------------------------------------------------ warnings


def test_leak_warning_names_counts_and_variant(mirror):
    text = leak_warning("vggsound-144k", mirror=mirror)
    for part in ("11,163", "144,000", "3,709", "72%", "5 more", "vggsound-144k-noleak", "132,837", "vgg_test",
                 "vggss_ext_neg"):
        assert part in text, part
    assert "787" in leak_warning("vggsound-10k", mirror=mirror) and "238" in leak_warning("vggsound-10k", mirror=mirror)
    flickr = leak_warning("flickr-144k", mirror=mirror)
    assert all(p in flickr for p in ("20 of its 144,000", "flickr-144k-noleak", "143,980", "senocak_test"))
    assert "1 of its 10,000 ids is" in leak_warning("flickr-10k", mirror=mirror)
    for name in ("vggsound-144k-noleak", "vggsound-heard", "flickr-sup-train", "flickr-10k-noleak"):
        assert leak_warning(name, mirror=mirror) is None, name


def test_rich_summaries_render(mirror, reports):
    console = Console(record=True, width=160)
    console.print(render_audit_table(list(reports.values())))
    console.print(load_training_set("vggsound-144k", mirror=mirror))
    text = console.export_text()
    assert "132,837" in text and "3,709 (72%)" in text and "leaks test data" in text


# ----------------------------------------------------------------------------------- vggsound.csv (no mirror)


def test_vggsound_csv_is_not_mirrored(mirror):
    with pytest.raises(DataFileError, match="pass its path"):
        load_training_set("vggsound", mirror=mirror)


def test_vggsound_csv_wrong_file_fails_the_git_blob_check(tmp_path, mirror):
    fake = tmp_path / "vggsound.csv"
    fake.write_text("--9O4XZOge4,30,\"female speech, woman speaking\",train\n")
    with pytest.raises(ChecksumError, match=f"git blob mismatch.*expected {VGGSOUND_CSV_BLOB}"):
        load_training_set("vggsound", mirror=mirror, list_path=fake)


def test_vggsound_csv_train_rows_and_noleak(tmp_path, mirror, monkeypatch):
    """A stand-in vggsound.csv pinned by its own git blob id in a copy of the manifests."""
    test_id = "glLQrEijrKg_000300"  # a VGGSound test clip (vgg_test)
    real_id = "9PmzQI8ZYpg_000147"  # a real negative of vggss_ext_neg, outside the test split
    rows = [
        '--9O4XZOge4,30,"female speech, woman speaking",train',
        "glLQrEijrKg,300,playing hammond organ,train",
        "9PmzQI8ZYpg,147,dog barking,train",
        "9PmzQI8ZYpg,20,dog barking,train",  # other segment of a dropped clip's video: kept
        "zzzzzzzzzzz,5,dog barking,test",
    ]
    fake = tmp_path / "vggsound.csv"
    fake.write_text("\r\n".join(rows) + "\r\n")
    manifests = tmp_path / "manifests"
    shutil.copytree(training_manifests_dir(), manifests / "training")
    toml = manifests / "training" / "vggsound.toml"
    toml.write_text(toml.read_text().replace(VGGSOUND_CSV_BLOB, git_blob_id(fake)))
    monkeypatch.setenv("AVSL_BENCH_MANIFESTS", str(manifests))
    assert test_id in read_id_list(resolve(leakage_files()["vgg_test"].upstream, mirror), "vggsound")

    legacy = load_training_set("vggsound", mirror=mirror, list_path=fake)
    assert legacy.ids == ("--9O4XZOge4_000030", test_id, real_id, "9PmzQI8ZYpg_000020")
    assert (legacy.list_rows, legacy.list_size) == (5, fake.stat().st_size)
    a = legacy.audit
    assert (a.in_test, a.dropped, a.noleak_rows, a.same_video_other_segment) == (1, 2, 2, 1)
    assert "2 clips are in vgg_test and vggss_ext_neg" in legacy.warning
    clean = load_training_set("vggsound-noleak", mirror=mirror, list_path=fake)
    assert clean.ids == ("--9O4XZOge4_000030", "9PmzQI8ZYpg_000020")


def test_audit_accepts_a_path(tmp_path, mirror):
    path = tmp_path / "train.txt"
    path.write_text("2432219254.wav\n1000025513.wav\n\n")  # a Flickr test id and a training id
    r = audit(path, "flickr", mirror=mirror)
    assert (r.list_name, r.rows, r.in_test, r.noleak_rows, r.leaked_ids) == (str(path), 2, 1, 1, ("2432219254",))
    with pytest.raises(DataFileError, match="invalid vggsound id"):
        audit(path, "vggss", mirror=mirror)
    with pytest.raises(DataFileError, match="unknown leakage reference"):
        audit(["x"], "audioset", mirror=mirror)


def test_row_count_pin_is_checked(tmp_path):
    spec = training_registry().get("flickr-10k")
    short = tmp_path / "flickr_10k.txt"
    short.write_text("1000025513\n")
    with pytest.raises(DataFileError, match=re.escape("should have 10000 rows, got 1")):
        read_list_file(spec.list_file, short, "flickr")


def test_module_exports():
    assert set(training.__all__) <= set(dir(training))


def test_pins_agree_with_benchmark_manifests():
    from avsl_bench.benchmarks.spec import benchmark_registry, get_spec

    ours = {(f.upstream.repo, f.upstream.path): f.upstream for f in _all_list_files().values()}
    shared = 0
    for name in benchmark_registry().names():
        for f in get_spec(name).files.values():
            if (f.repo, f.path) in ours:
                shared += 1
                assert (ours[f.repo, f.path].commit, ours[f.repo, f.path].sha256) == (f.commit, f.sha256), name
    assert shared >= 5
