"""`make demo` end to end on the CI-sized synthetic benchmark (one epoch: a smoke test, not a number)."""

import json

from avsl_bench.demo import run_demo


def test_demo_pipeline_smoke(tmp_path):
    index = run_demo(tmp_path / "demo", size="synthetic-tiny", epochs=1, device="cpu")
    assert index.is_file() and index.name == "index.html"
    results = sorted((tmp_path / "demo" / "results").glob("*.json"))
    assert [p.stem for p in results] == ["center-prior", "ezvsl", "slavc"]
    for path in results:
        result = json.loads(path.read_text())
        assert result["protocol"] == "synthetic-tiny-ext@1"
        assert result["method"]["checkpoint_selection"] == "final"
    assert (tmp_path / "demo" / "runs" / "ezvsl" / "run.json").is_file()
