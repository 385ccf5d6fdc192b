"""Shard data for training and prediction: an index over WebDataset tars, a map-style dataset, batch samplers.

Shards are plain uncompressed tars (data spec §8: `<key>.flac`, `<key>.jpg`, `<key>.json` per sample), so a sample
is read by positional reads (`os.pread`) at member offsets found once by scanning the headers. Map-style access
makes the shuffle order an exact pure function of (seed, epoch) — a global permutation, split into per-GPU slices —
independent of worker count and shard layout.

`check_training_data` enforces "test sets are never read during training": any `manifest.json` or sample `.json`
with split `test`/`test-neg` (or a negative pair), or of a held-out `val`/`val-neg` split, is refused before a byte
of media is decoded.

Semi-supervised methods (baselines spec §3.7) additionally get, per training item, a box mask that follows the
image's crop and flip (`AVDataset(..., targets=True)`; boxes are read only from samples marked `"labelled": true`)
and a `SemiSupBatchSampler` (labelled-only warm-up epochs, then unlabelled + labelled batches).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .. import features
from ..errors import DataFileError, UsageError
from ..data.plan import keys_sha256
from ..files import sha256_file
from .seeding import epoch_permutation, sample_rng

__all__ = [
    "LeakageError", "SampleRef", "ShardIndex", "check_training_data", "AVDataset", "EpochBatchSampler",
    "clip_centre", "decode_audio", "decode_image", "FORBIDDEN_SPLITS", "HELD_OUT_SPLITS", "box_mask", "is_labelled",
    "labelled_flags", "SemiSupBatchSampler", "STREAM_LABELLED",
]

FORBIDDEN_SPLITS = ("test", "test-neg")
#: Held-out validation splits (synthetic `val`, the semi-supervised label splits' `val`, baselines spec §3.7): for the
#: user's own analysis only; no training run reads them (no early stopping, no validation hook).
HELD_OUT_SPLITS = ("val", "val-neg")
NOMINAL_CLIP_CENTRE = 5.0  # data spec §3: protocol windows are centred on clip time 5.0 s


class LeakageError(UsageError):
    """Training was pointed at test data (or other data it must never read)."""


@dataclass(frozen=True)
class SampleRef:
    """One sample of a shard: where its members are and its parsed `.json`."""

    key: str
    shard: int  # index into ShardIndex.shards
    flac: tuple[int, int]  # (offset, size) in the tar
    jpg: tuple[int, int]
    meta: dict = field(repr=False, hash=False, compare=False)


def _split_key(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def _scan_tar(path: Path, shard: int) -> list[SampleRef]:
    members: dict[str, dict[str, tuple[int, int]]] = {}
    metas: dict[str, dict] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = _split_key(info.name)
                if key not in members:
                    members[key] = {}
                    order.append(key)
                members[key][ext] = (info.offset_data, info.size)
                if ext == "json":
                    raw = tar.extractfile(info).read()
                    metas[key] = json.loads(raw.decode("utf-8"))
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DataFileError(f"{path}: unreadable shard: {exc}") from exc
    refs = []
    for key in order:
        got = members[key]
        missing = [e for e in ("flac", "jpg", "json") if e not in got]
        if missing:
            raise DataFileError(f"{path}: sample {key!r} lacks member(s) {', '.join(missing)}")
        meta = metas[key]
        if meta.get("key", key) != key:
            raise DataFileError(f"{path}: sample {key!r} has .json key {meta.get('key')!r}")
        refs.append(SampleRef(key=key, shard=shard, flac=got["flac"], jpg=got["jpg"], meta=meta))
    return refs


@dataclass
class ShardIndex:
    """Every sample of one or more split directories (or tar files), in shard order."""

    sources: list[Path]
    shards: list[Path]
    samples: list[SampleRef]
    manifests: dict[str, dict | None]  # split dir -> parsed manifest.json (None if absent)
    manifest_sha256: dict[str, str | None]

    @classmethod
    def build(cls, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> "ShardIndex":
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        sources = [Path(p) for p in paths]
        if not sources:
            raise UsageError("no shard directory given")
        shards: list[Path] = []
        manifests: dict[str, dict | None] = {}
        manifest_sha: dict[str, str | None] = {}
        for src in sources:
            if src.is_file() and src.suffix == ".tar":
                shards.append(src)
                continue
            if not src.is_dir():
                raise DataFileError(f"{src}: no such shard directory or .tar file")
            found = sorted(p for p in src.glob("*.tar"))
            if not found:
                raise DataFileError(f"{src}: no .tar shards")
            shards.extend(found)
            mpath = src / "manifest.json"
            if mpath.is_file():
                try:
                    manifests[str(src)] = json.loads(mpath.read_text(encoding="utf-8"))
                except ValueError as exc:
                    raise DataFileError(f"{mpath}: unreadable manifest: {exc}") from exc
                manifest_sha[str(src)] = sha256_file(mpath)
            else:
                manifests[str(src)], manifest_sha[str(src)] = None, None
        samples: list[SampleRef] = []
        for i, shard in enumerate(shards):
            samples.extend(_scan_tar(shard, i))
        keys = [s.key for s in samples]
        if len(set(keys)) != len(keys):
            import collections

            dup = next(k for k, c in collections.Counter(keys).items() if c > 1)
            raise DataFileError(f"duplicate sample key {dup!r} across the given shards")
        return cls(sources=sources, shards=shards, samples=samples, manifests=manifests, manifest_sha256=manifest_sha)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.samples]

    def keys_sha256(self) -> str:
        """sha256 of the sorted sample keys, one per line (the effective training list)."""
        return keys_sha256(self.keys)

    def shard_digests(self) -> list[dict[str, Any]]:
        """Name, bytes and sha256 of every shard (from manifest.json when it lists them, else hashed here)."""
        listed: dict[str, str] = {}
        for src, manifest in self.manifests.items():
            for entry in (manifest or {}).get("shards", []) or []:
                if isinstance(entry, dict) and "name" in entry and "sha256" in entry:
                    listed[str(Path(src) / entry["name"])] = entry["sha256"]
        out = []
        for path in self.shards:
            digest = listed.get(str(path)) or sha256_file(path)
            out.append({"path": str(path), "bytes": path.stat().st_size, "sha256": digest})
        return out

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.samples:
            split = str(s.meta.get("split"))
            counts[split] = counts.get(split, 0) + 1
        return counts

    def benchmarks(self) -> list[str]:
        return sorted({str(s.meta.get("benchmark")) for s in self.samples})


def is_labelled(meta: dict) -> bool:
    """True only for samples that `prepare` marked `"labelled": true` (their boxes may be read for training)."""
    return meta.get("labelled") is True


def labelled_flags(index: ShardIndex) -> np.ndarray:
    """(N,) bool: which samples of the index are labelled."""
    return np.array([is_labelled(s.meta) for s in index.samples], dtype=bool)


def box_mask(boxes: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Union of normalised xyxy boxes rasterised at `height`×`width` (uint8 0/1): pixel columns
    round(xmin·W) … round(xmax·W) − 1, rows likewise."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        c0, c1 = (int(np.floor(v * width + 0.5)) for v in (x0, x1))
        r0, r1 = (int(np.floor(v * height + 0.5)) for v in (y0, y1))
        mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = 1
    return mask


def check_training_data(index: ShardIndex) -> None:
    """Refuse test data, negative pairs and held-out val splits for training (LeakageError naming the file)."""
    for src, manifest in index.manifests.items():
        if manifest and str(manifest.get("split")) in FORBIDDEN_SPLITS:
            raise LeakageError(f"{src}/manifest.json: split {manifest.get('split')!r} is a test split; "
                               "training never reads test data")
        if manifest and str(manifest.get("split")) in HELD_OUT_SPLITS:
            raise LeakageError(f"{src}/manifest.json: split {manifest.get('split')!r} is a held-out validation "
                               "split; training never reads val data (no early stopping)")  # fmt: skip
    for ref in index.samples:
        split = str(ref.meta.get("split"))
        if split in FORBIDDEN_SPLITS:
            raise LeakageError(f"{index.shards[ref.shard]}: sample {ref.key!r} belongs to split {split!r}; "
                               "training never reads test data")
        if ref.meta.get("negative"):
            raise LeakageError(f"{index.shards[ref.shard]}: sample {ref.key!r} is a negative pair; "
                               "training needs audio-visual pairs of one clip")
        if split in HELD_OUT_SPLITS:
            raise LeakageError(f"{index.shards[ref.shard]}: sample {ref.key!r} belongs to the held-out split "
                               f"{split!r}; training never reads val data (no early stopping)")  # fmt: skip


# --------------------------------------------------------------------------------------------- decoding

_FDS: dict[tuple[int, str], int] = {}


def _read(path: Path, offset: int, size: int) -> bytes:
    key = (os.getpid(), str(path))
    fd = _FDS.get(key)
    if fd is None:
        fd = _FDS[key] = os.open(path, os.O_RDONLY)
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise DataFileError(f"{path}: short read at offset {offset}")
    return data


def decode_image(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def decode_audio(data: bytes) -> np.ndarray:
    import soundfile as sf

    pcm, _ = sf.read(io.BytesIO(data), dtype="int16", always_2d=False)
    if pcm.ndim != 1:
        pcm = pcm[:, 0]
    return pcm


def clip_centre(meta: dict) -> float:
    """Clip time the protocol window is centred on: 5.0 s (data spec §3); synthetic clips: their frame time."""
    source = meta.get("source") or {}
    if source.get("kind") == "synthetic":
        return float((meta.get("frame") or {}).get("t", 1.5))
    return NOMINAL_CLIP_CENTRE


class AVDataset(Dataset):
    """Decoded, transformed samples of a ShardIndex.

    * `mode="train"`: item `(epoch, i)` → image = resize short side → random crop → flip (rng from
      (seed, epoch, i)); audio = protocol window → front-end.
    * `mode="eval"`: item `i` or `(i, j)` (frame of i, audio of j) → image = squash to `image_size`; audio as above.
      With `ogl_image=True` the item also carries the 224×224 squash for the OGL prior.

    Items: `{"image": uint8 (3, S, S), "audio": float32 features, "index": i}`. With `cache=True` call
    `fill_cache()` once: every sample's pre-crop image and audio features are decoded once and kept in memory.
    With `targets=True` (train mode, semi-supervised methods) items also carry `"mask"`: uint8 (S, S), the union of
    the sample's boxes rasterised at the pre-crop size and cropped/flipped with the image (same draws, so the image
    is unchanged), and `"labelled"` (bool); unlabelled samples get a zero mask and their boxes are not read.
    """

    def __init__(self, index: ShardIndex, input_cfg, *, mode: str, seed: int = 0, ogl_image: bool = False,
                 targets: bool = False) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be train or eval, got {mode!r}")
        self.index, self.cfg, self.mode, self.seed, self.ogl_image = index, input_cfg, mode, int(seed), ogl_image
        self.targets = bool(targets)
        self.frontend = features.AudioFrontend(input_cfg.audio_frontend, input_cfg.freq_bins, input_cfg.time_frames)
        self._cache: list | None = None

    def __len__(self) -> int:
        return len(self.index)

    # -- decoding of one sample (no randomness) --------------------------------------------------------

    def _image(self, i: int) -> dict[str, np.ndarray]:
        ref = self.index.samples[i]
        img = decode_image(_read(self.index.shards[ref.shard], *ref.jpg))
        out = {}
        if self.mode == "train":
            out["pre"] = features.resize_short_side(img, self.cfg.resize_short)
        else:
            out["pre"] = features.squash_image(img, self.cfg.image_size)
            if self.ogl_image:
                out["ogl"] = features.squash_image(img, 224)
        return out

    def _audio(self, i: int) -> torch.Tensor:
        ref = self.index.samples[i]
        pcm = decode_audio(_read(self.index.shards[ref.shard], *ref.flac))
        audio_meta = ref.meta.get("audio") or {}
        window = audio_meta.get("window") or [0.0, len(pcm) / features.SAMPLE_RATE]
        rate = int(audio_meta.get("sample_rate", features.SAMPLE_RATE))
        if rate != features.SAMPLE_RATE:
            raise DataFileError(f"sample {ref.key!r}: audio at {rate} Hz, expected {features.SAMPLE_RATE}")
        wave = features.protocol_window(pcm, window, centre=clip_centre(ref.meta), seconds=self.cfg.audio_seconds)
        return self.frontend(wave)

    def decode(self, i: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        return self._image(i), self._audio(i)

    def fill_cache(self, workers: int = 0) -> None:
        """Decode every sample once (in `workers` processes) and keep the results."""
        from torch.utils.data import DataLoader

        loader = DataLoader(_DecodeView(self), batch_size=None, num_workers=workers, collate_fn=_identity,
                            worker_init_fn=_one_thread if workers else None)  # fmt: skip
        self._cache = list(loader)

    def _get(self, i: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        return self._cache[i] if self._cache is not None else self.decode(i)

    # -- items ---------------------------------------------------------------------------------------

    def __getitem__(self, item) -> dict[str, Any]:
        if self.mode == "train":
            epoch, i = item
            image, audio = self._get(i)
            rng = sample_rng(self.seed, epoch, i)
            if not self.targets:
                arr = features.random_crop_flip(image["pre"], self.cfg.image_size, rng, self.cfg.flip)
                return {"image": features.to_chw_uint8(arr), "audio": audio, "index": i}
            pre, meta = image["pre"], self.index.samples[i].meta
            labelled = is_labelled(meta)
            mask = box_mask(meta.get("boxes") or [], *pre.shape[:2]) if labelled else np.zeros(pre.shape[:2], np.uint8)
            both = features.random_crop_flip(np.concatenate([pre, mask[..., None]], axis=2), self.cfg.image_size, rng,
                                             self.cfg.flip)  # fmt: skip
            return {"image": features.to_chw_uint8(both[..., :3]), "audio": audio, "index": i,
                    "mask": torch.from_numpy(np.ascontiguousarray(both[..., 3])), "labelled": labelled}
        i, j = (item, item) if isinstance(item, (int, np.integer)) else item
        image = self._get(i)[0] if self._cache is not None else self._image(i)
        audio = self._get(j)[1] if self._cache is not None else self._audio(j)
        out = {"image": features.to_chw_uint8(image["pre"]), "audio": audio, "index": i}
        if self.ogl_image:
            out["ogl_image"] = features.to_chw_uint8(image["ogl"])
        return out


class _DecodeView(Dataset):
    def __init__(self, ds: AVDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds.decode(i)


def _identity(x):
    return x


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


class EpochBatchSampler(Sampler):
    """Global batches of a fixed size from a per-epoch permutation; this rank gets its contiguous slice.

    Yields lists of `(epoch, index)`; `drop_last` always (contrastive losses need full batches). The order is a
    pure function of (seed, epoch); with G ranks, rank r takes items [r·B/G, (r+1)·B/G) of every global batch.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise UsageError(f"global batch {batch_size} is not divisible by the number of GPUs ({world_size})")
        if n < batch_size:
            raise UsageError(f"{n} training samples are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world_size
        self.local = batch_size // world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for b in range(len(self)):
            start = b * self.batch_size + self.rank * self.local
            yield [(self.epoch, int(i)) for i in perm[start : start + self.local]]


STREAM_LABELLED = 3  # seed stream of the labelled-sample order (shuffle = 1, augmentation = 2; see seeding.py)


def _labelled_stream(pool: np.ndarray, seed: int, epoch: int, count: int) -> np.ndarray:
    """`count` labelled indices for epoch `epoch`: concatenated permutations of `pool` (a pure function of seed,
    epoch), so a labelled set smaller than the labelled share of an epoch is cycled, never truncated."""
    out, k = [], 0
    while sum(len(o) for o in out) < count:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAM_LABELLED, epoch, k])))
        out.append(pool[rng.permutation(len(pool))])
        k += 1
    return np.concatenate(out)[:count] if out else np.zeros(0, dtype=np.int64)


class SemiSupBatchSampler(Sampler):
    """Batches for semi-supervised methods (§3.7): a pure function of (seed, epoch), split across ranks.

    * warm-up epochs (`epoch < warmup_epochs`): labelled samples only, batches of `labelled_batch` (or `batch_size`
      when 0), max(1, n_L // that) batches, the labelled set cycled if smaller than a batch;
    * afterwards with `labelled_batch > 0`: each global batch = `batch_size` unlabelled samples (one permutation of
      the unlabelled pool per epoch, n_U // batch_size batches) + `labelled_batch` labelled ones (cycled stream);
    * afterwards with `labelled_batch == 0`: exactly `EpochBatchSampler` over all samples (labelled mixed in).

    Rank r takes its contiguous 1/G slice of each part. Yields lists of `(epoch, index)`.
    """

    def __init__(self, labelled: np.ndarray, batch_size: int, *, labelled_batch: int = 0, warmup_epochs: int = 0,
                 seed: int, rank: int = 0, world_size: int = 1) -> None:
        labelled = np.asarray(labelled, dtype=bool)
        self.lab = np.flatnonzero(labelled)
        self.unlab = np.flatnonzero(~labelled) if labelled_batch else np.arange(len(labelled))
        if not len(self.lab):
            raise UsageError("semi-supervised training needs labelled samples (train samples marked "
                             '"labelled": true by prepare); none found')
        for size in (batch_size, labelled_batch):
            if size % world_size:
                raise UsageError(f"batch part {size} is not divisible by the number of GPUs ({world_size})")
        if len(self.unlab) < batch_size:
            raise UsageError(f"{len(self.unlab)} unlabelled training samples are fewer than one batch of {batch_size}")
        self.batch_size, self.labelled_batch, self.warmup = int(batch_size), int(labelled_batch), int(warmup_epochs)
        self.seed, self.rank, self.world = seed, rank, world_size
        self.local = (batch_size + labelled_batch) // world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def warming_up(self, epoch: int | None = None) -> bool:
        return (self.epoch if epoch is None else epoch) < self.warmup

    def _warm_size(self) -> int:
        return self.labelled_batch or self.batch_size

    def __len__(self) -> int:
        if self.warming_up():
            return max(1, len(self.lab) // self._warm_size())
        return len(self.unlab) // self.batch_size

    def global_batch(self) -> int:
        """Samples per global batch in the current epoch."""
        return self._warm_size() if self.warming_up() else self.batch_size + self.labelled_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        n = len(self)
        if self.warming_up():
            size = self._warm_size()
            stream, local = _labelled_stream(self.lab, self.seed, self.epoch, n * size), size // self.world
            for b in range(n):
                start = b * size + self.rank * local
                yield [(self.epoch, int(i)) for i in stream[start : start + local]]
            return
        perm = self.unlab[epoch_permutation(len(self.unlab), self.seed, self.epoch)]
        lab = _labelled_stream(self.lab, self.seed, self.epoch, n * self.labelled_batch)
        lu, ll = self.batch_size // self.world, self.labelled_batch // self.world
        for b in range(n):
            u0, l0 = b * self.batch_size + self.rank * lu, b * self.labelled_batch + self.rank * ll
            items = list(perm[u0 : u0 + lu]) + list(lab[l0 : l0 + ll])
            yield [(self.epoch, int(i)) for i in items]
