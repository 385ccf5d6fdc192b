"""Deterministic seeding: Python, numpy, torch (CPU + CUDA), data-loader workers, per-sample augmentation.

Every random draw of the data pipeline is a pure function of (seed, epoch, sample index): the shuffle order
(`epoch_permutation`) and each sample's augmentation (`sample_rng`), so results do not depend on the number of
workers or GPUs' scheduling. `cudnn.benchmark` is always off; `deterministic=True` also turns on
`torch.use_deterministic_algorithms` (slower on GPU).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "epoch_permutation", "sample_rng", "worker_init_fn", "STREAM_SHUFFLE", "STREAM_AUGMENT"]

STREAM_SHUFFLE = 1
STREAM_AUGMENT = 2


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (all devices); cudnn.benchmark off; optionally deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch `epoch`: a permutation of range(n), a pure function of (seed, epoch)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAM_SHUFFLE, epoch])))
    return rng.permutation(n)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of sample `index` in epoch `epoch`."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAM_AUGMENT, epoch, index])))


def worker_init_fn(worker_id: int) -> None:
    """Data-loader workers: one torch thread each; Python/numpy seeded from torch's per-worker seed (which is
    derived from the loader's generator, itself seeded from the run seed). Augmentation does not use them."""
    torch.set_num_threads(1)
    base = torch.initial_seed() % (2**32)
    random.seed(base)
    np.random.seed(base)
