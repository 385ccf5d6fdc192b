"""Benchmark definitions (`manifests/*.toml`), annotation files and ground-truth rasterisation."""
