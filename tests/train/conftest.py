"""Fixtures: minimal shard sets written here (Pillow JPEG + soundfile FLAC, no ffmpeg), and a tiny recipe."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

CLASSES = ["circle", "square", "triangle", "star"]
FREQS = [440.0, 660.0, 880.0, 1320.0]


def _sample(key: str, split: str, i: int, rng: np.random.Generator, *, negative: bool = False,
            kind: str = "synthetic", window=(0.0, 3.0)) -> list[tuple[str, bytes]]:
    import soundfile as sf
    from PIL import Image

    c = i % len(CLASSES)
    img = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
    x0 = int(rng.integers(0, 32))
    img[10:34, x0 : x0 + 24] = 255 * np.eye(3, dtype=np.uint8)[c % 3]
    jpg = io.BytesIO()
    Image.fromarray(img).save(jpg, format="JPEG", quality=90)
    n = int(round((window[1] - window[0]) * 16000))
    t = np.arange(n) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * FREQS[c] * t) * 32767).astype(np.int16)
    flac = io.BytesIO()
    sf.write(flac, pcm, 16000, format="FLAC", subtype="PCM_16")
    meta = {
        "key": key, "benchmark": "fixture", "split": split, "negative": negative,
        "negative_type": "silent" if negative else None, "label": "non-sounding" if negative else "sounding",
        "class": CLASSES[c], "frame_classes": [CLASSES[c], CLASSES[(c + 1) % 4]],
        "boxes": [] if negative else [[x0 / 64, 10 / 48, (x0 + 24) / 64, 34 / 48]],
        "source": {"kind": kind}, "frame": {"t": 1.5 if kind == "synthetic" else 5.0, "width": 64, "height": 48},
        "audio": {"window": list(window), "sample_rate": 16000, "samples": n},
    }
    return [(f"{key}.flac", flac.getvalue()), (f"{key}.jpg", jpg.getvalue()),
            (f"{key}.json", json.dumps(meta, sort_keys=True).encode())]


def write_split(directory: Path, split: str, n: int, *, per_shard: int = 32, seed: int = 0, **kw) -> Path:
    """`n` samples of `split` in `directory/NNNNNN.tar` (keys `fx_<split>_<i:04d>`)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for s, start in enumerate(range(0, n, per_shard)):
        with tarfile.open(directory / f"{s:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + per_shard)):
                for name, data in _sample(f"fx_{split.replace('-', '_')}_{i:04d}", split, i, rng, **kw):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return directory


TINY_RECIPE = """
method = "{method}"
version = 1
title = "test fixture"
train_set = "fixture"

[model]
visual = "small_cnn"
visual_widths = [8, 8, 8, 16, 16]
visual_strides = [2, 2, 1, 2, 1]
visual_weights = ""
audio = "conv1d"
audio_widths = [16, 16, 16]
dim = 16
tau = 0.07
{extra}
[input]
image_size = 32
resize_short = 36
audio_seconds = 3.0
audio_frontend = "pooled"
freq_bins = 32
time_frames = 50

[optim]
lr = 1e-3

[schedule]
epochs = 2
batch_size = 16

[runtime]
workers = 0
cache_decoded = {cache}
"""


def tiny_recipe(path: Path, method: str, *, cache: bool = False) -> Path:
    extra = "momentum = 0.9\n" if method == "slavc" else ""
    path.write_text(TINY_RECIPE.format(method=method, extra=extra, cache="true" if cache else "false"))
    return path


@pytest.fixture(scope="session")
def fixture_shards(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    return {
        "train": write_split(root / "train", "train", 64),
        "test": write_split(root / "test", "test", 24, seed=1),
        "test-neg": write_split(root / "test-neg", "test-neg", 8, seed=2, negative=True),
    }
