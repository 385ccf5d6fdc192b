"""`avsl-bench leaderboard add / build` through the real CLI (CliRunner)."""

from __future__ import annotations

from typer.testing import CliRunner

from avsl_bench.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_texts():
    for command in (["leaderboard"], ["leaderboard", "add"], ["leaderboard", "build"]):
        result = _invoke(*command, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_add_then_build(tmp_path, results):
    store = tmp_path / "lb"
    result = _invoke("leaderboard", "add", results["good"], "--store", store)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("added: ") and "slavc--synthetic-tiny--" in result.output
    again = _invoke("leaderboard", "add", results["good"], "--store", store)
    assert again.exit_code == 0 and again.output.startswith("unchanged: ")
    built = _invoke("leaderboard", "build", "--out", tmp_path / "site", "--store", store, "--extra", results["xss"])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "site" / "index.html").is_file()
    assert f"site: {tmp_path / 'site' / 'index.html'}" in built.output
    readme = (store / "README.md").read_text()
    assert "slavc--synthetic-tiny--" in readme and "alert" not in readme  # extras never reach the README
    assert "alert" in (tmp_path / "site" / "synthetic-tiny-ext.html").read_text()


def test_build_with_a_custom_markdown_path(tmp_path):
    result = _invoke("leaderboard", "build", "--out", tmp_path / "site", "--store", tmp_path / "empty",
                     "--markdown", tmp_path / "tables.md")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tables.md").read_text().startswith("# avsl-bench leaderboard")
    assert not (tmp_path / "empty").exists()


def test_refusals_are_one_line_with_exit_2(tmp_path, results, result_copy):
    store = tmp_path / "lb"
    result = _invoke("leaderboard", "add", results["early"], "--store", store)
    assert result.exit_code == 2
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message
    assert "checkpoint selection is 'early_stopping'" in message and "final" in message
    assert not (store / "results").exists()
    missing = _invoke("leaderboard", "add", tmp_path / "nope.json", "--store", store)
    assert missing.exit_code == 2 and "nope.json" in missing.output
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "keep.txt").write_text("x")
    build = _invoke("leaderboard", "build", "--out", tmp_path / "docs", "--store", store)
    assert build.exit_code == 2 and "not a leaderboard site" in build.output
