"""Shared fixtures: the read-only upstream mirror beside the checkout, an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [os.environ.get("AVSL_BENCH_UPSTREAM"), REPO.parent / "shared" / "upstream"]
UPSTREAM = next((Path(p) for p in _CANDIDATES if p and Path(p).is_dir()), None)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or the network-backed default during tests."""
    monkeypatch.setenv("AVSL_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def upstream(monkeypatch) -> Path:
    """The upstream annotation mirror (`../shared/upstream`); tests needing it skip where it is absent."""
    if UPSTREAM is None:
        pytest.skip("upstream mirror not available (set AVSL_BENCH_UPSTREAM)")
    monkeypatch.setenv("AVSL_BENCH_UPSTREAM", str(UPSTREAM))
    return UPSTREAM
