"""Rendering of the synthetic benchmark (data spec §10): RGB frames, PCM clips, shard blobs.

The scene parameters come from `avsl_bench.benchmarks.synthetic.scene_params` (pure numpy, cheap); this
module turns them into pixels and samples, then into a JPEG (Pillow, quality 95, no EXIF), a FLAC (the §4
ffmpeg path) and the sample's `.json` record (§8 fields + the scene parameters + sha256 of the raw RGB
array and of the PCM).

Every random draw here comes from a `PCG64(<seed>)` generator whose seed is one of the scene's drawn
`image_noise_seed` / `audio.noise_seed`, so a `SceneParams` alone fixes the bytes.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..benchmarks.synthetic import (
    CLASSES, CLIP_SAMPLES, CLIP_SECONDS, FRAME_TIME, HEIGHT, SAMPLE_RATE, SILENT, WIDTH, SceneParams, object_mask,
    scene_params,
)  # fmt: skip
from ..errors import AvslBenchError
from ..files import sha256_bytes

__all__ = [
    "render_rgb", "render_audio", "render_sample", "RenderedSample", "encode_jpeg", "sample_blobs",
    "sample_blobs_batch", "encode_flac_batch", "BATCH_CLIPS", "meta_hashes", "assert_disjoint_splits", "SplitLeakError",
    "object_masks", "plan_row", "encode_flac_soundfile", "FLAC_ENCODERS", "labelled_keys", "LABELLED_SALT",
]

JPEG_QUALITY = 95
PINK_LOW_HZ = 20.0  # pink noise spectrum ∝ 1/sqrt(max(f, 20 Hz)): no infrasonic drift
HARMONIC_LIMIT_HZ = 7200.0  # band-limited square/sawtooth: partials below 0.9 × Nyquist
GATE_RAMP_SECONDS = 0.005  # raised-cosine edges of the on/off gates (no clicks)
MAX_AMPLITUDE = 0.99  # a mix peaking above this is scaled down to it (no clipping)


class SplitLeakError(AvslBenchError):
    """A val/test frame or clip is byte-identical to a train one (data spec §10, disjoint splits)."""


# ------------------------------------------------------------------------------------------------- RGB


def _background(params: SceneParams) -> np.ndarray:
    """Float32 RGB background: grey level + 2–3 gratings + tint + Gaussian pixel noise (σ = 8).

    A grating `A sin(kx x + ky y + φ)` (k = 2π cycles / W · (cos θ, sin θ), pixel coordinates) is computed
    separably as `A (sin(kx x) cos(ky y + φ) + cos(kx x) sin(ky y + φ))`.
    """
    x = np.arange(WIDTH, dtype=np.float64)
    y = np.arange(HEIGHT, dtype=np.float64)
    grey = np.full((HEIGHT, WIDTH), params.background_level)
    for g in params.gratings:
        k = 2 * math.pi * g.cycles / WIDTH
        u = k * math.cos(g.orientation) * x
        v = k * math.sin(g.orientation) * y + g.phase
        grey += g.amplitude * (np.outer(np.cos(v), np.sin(u)) + np.outer(np.sin(v), np.cos(u)))
    noise = np.random.Generator(np.random.PCG64(params.image_noise_seed)).standard_normal(
        (HEIGHT, WIDTH, 3), dtype=np.float32
    )
    noise *= np.float32(params.image_noise_sigma)
    noise += grey.astype(np.float32)[:, :, None]
    noise += np.asarray(params.tint, dtype=np.float32)[None, None, :]
    return noise


def render_rgb(params: SceneParams) -> np.ndarray:
    """The frame: uint8 array (192, 256, 3), objects painted back to front without anti-aliasing."""
    img = np.clip(np.rint(_background(params)), 0, 255).astype(np.uint8)
    for k in params.draw_order:
        obj = params.objects[k]
        x0, y0, x1, y1 = obj.box
        mask = object_mask(CLASSES[obj.class_id].shape, x1 - x0 + 1, y1 - y0 + 1)
        img[y0 : y1 + 1, x0 : x1 + 1][mask] = np.asarray(obj.colour, dtype=np.uint8)
    return img


def object_masks(params: SceneParams) -> list[np.ndarray]:
    """Full-frame boolean masks of every object, unoccluded, in `params.objects` order."""
    masks = []
    for obj in params.objects:
        x0, y0, x1, y1 = obj.box
        full = np.zeros((HEIGHT, WIDTH), dtype=bool)
        full[y0 : y1 + 1, x0 : x1 + 1] = object_mask(CLASSES[obj.class_id].shape, x1 - x0 + 1, y1 - y0 + 1)
        masks.append(full)
    return masks


# ----------------------------------------------------------------------------------------------- audio


@functools.lru_cache(maxsize=4)
def _gate(rate: float, duty: float = 0.5, ramp: float = GATE_RAMP_SECONDS) -> np.ndarray:
    """On/off envelope over the clip: on for `duty` of each 1/rate period, raised-cosine edges of `ramp` s."""
    t = _clip_time()
    period = 1.0 / rate
    tau = np.mod(t, period)
    on = duty * period
    lin = np.clip(np.minimum(tau, on - tau) / ramp, 0.0, 1.0) * (tau < on)
    env = 0.5 - 0.5 * np.cos(math.pi * lin)
    env.flags.writeable = False
    return env


@functools.lru_cache(maxsize=1)
def _clip_time() -> np.ndarray:
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    t.flags.writeable = False
    return t


def _harmonics(f0: float, weight) -> np.ndarray:
    """Σ weight(k) sin(2π k f0 t) over the partials k f0 < 7200 Hz (powers of exp(iθ) by recurrence)."""
    z = np.exp(1j * (2 * math.pi * f0) * _clip_time())
    zk = z.copy()
    out = np.zeros(CLIP_SAMPLES)
    k = 1
    while k * f0 < HARMONIC_LIMIT_HZ:
        w = weight(k)
        if w:
            out += w * zk.imag
        zk *= z
        k += 1
    return out


def _class_sound(class_id: int, pitch: float, rng: np.random.Generator) -> np.ndarray:
    """The (unscaled) sound of one class over the clip, every frequency multiplied by `pitch`."""
    t = _clip_time()
    duration = CLIP_SECONDS
    if class_id == 0:  # sine 440 Hz
        return np.sin((2 * math.pi * 440.0 * pitch) * t)
    if class_id == 1:  # band-limited square 220 Hz: odd partials, 1/k
        return _harmonics(220.0 * pitch, lambda k: 1.0 / k if k % 2 else 0.0)
    if class_id == 2:  # band-limited sawtooth 330 Hz: all partials, ±1/k
        return _harmonics(330.0 * pitch, lambda k: (1.0 if k % 2 else -1.0) / k)
    if class_id == 3:  # exponential chirp 400 → 1600 Hz over the clip
        f0, f1 = 400.0 * pitch, 1600.0 * pitch
        r = math.log(f1 / f0)
        return np.sin((2 * math.pi * f0 * duration / r) * np.expm1(t * (r / duration)))
    if class_id == 4:  # linear chirp 2000 → 500 Hz over the clip
        f0, f1 = 2000.0 * pitch, 500.0 * pitch
        return np.sin((2 * math.pi) * (f0 * t + ((f1 - f0) / (2 * duration)) * t * t))
    if class_id == 5:  # 660 Hz, gated on/off at 4 Hz
        return np.sin((2 * math.pi * 660.0 * pitch) * t) * _gate(4.0)
    if class_id == 6:  # 500 + 750 Hz dyad
        return np.sin((2 * math.pi * 500.0 * pitch) * t) + np.sin((2 * math.pi * 750.0 * pitch) * t)
    if class_id == 7:  # 2–4 kHz band noise, 3 bursts per second
        spec = np.fft.rfft(rng.standard_normal(CLIP_SAMPLES))
        freqs = _rfft_freqs()
        spec[(freqs < 2000.0 * pitch) | (freqs > 4000.0 * pitch)] = 0.0
        return np.fft.irfft(spec, CLIP_SAMPLES) * _gate(3.0)
    raise ValueError(f"unknown class {class_id}")


@functools.lru_cache(maxsize=1)
def _rfft_freqs() -> np.ndarray:
    f = np.fft.rfftfreq(CLIP_SAMPLES, 1.0 / SAMPLE_RATE)
    f.flags.writeable = False
    return f


@functools.lru_cache(maxsize=1)
def _pink_filter() -> np.ndarray:
    filt = 1.0 / np.sqrt(np.maximum(_rfft_freqs(), PINK_LOW_HZ))
    filt[0] = 0.0
    filt.flags.writeable = False
    return filt


def _pink(rng: np.random.Generator) -> np.ndarray:
    """Pink noise over the clip (power ∝ 1/f above 20 Hz, flat below, no DC), unit RMS."""
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(CLIP_SAMPLES)) * _pink_filter(), CLIP_SAMPLES)
    return noise / np.sqrt(np.mean(noise**2))


@functools.lru_cache(maxsize=2)
def _fade(seconds: float) -> np.ndarray:
    ramp = int(round(seconds * SAMPLE_RATE))
    env = np.ones(CLIP_SAMPLES)
    env[:ramp] = np.arange(ramp) / ramp
    env[CLIP_SAMPLES - ramp :] = np.arange(ramp)[::-1] / ramp
    env.flags.writeable = False
    return env


def render_audio(params: SceneParams, *, silent: bool = False) -> np.ndarray:
    """The clip: int16 array (48000,) = the sounding class's sound (pitch-jittered, 10 ms linear fades,
    scaled to `peak` of full scale) + pink noise at `snr_db` below the sound's RMS. Where the mix would
    exceed 0.99 of full scale, sound and noise are scaled down together (the SNR is kept).

    `silent=True` gives the same noise alone, at the same gain (the audio of a `silent` negative).
    """
    a = params.audio
    rng = np.random.Generator(np.random.PCG64(a.noise_seed))
    pink = _pink(rng)  # drawn first, so a silent negative's noise is its positive's noise
    sound = _class_sound(a.class_id, a.pitch_factor, rng) * _fade(a.fade_seconds)
    sound *= a.peak / np.max(np.abs(sound))
    noise = pink * (np.sqrt(np.mean(sound**2)) / 10.0 ** (a.snr_db / 20.0))
    mix = sound + noise
    top = np.max(np.abs(mix))
    if top > MAX_AMPLITUDE:  # never clip: scale sound and noise together (≈ 5 % of clips)
        mix *= MAX_AMPLITUDE / top
        noise *= MAX_AMPLITUDE / top
    if silent:
        mix = noise
    return np.clip(np.rint(mix * 32768.0), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class RenderedSample:
    """One annotation row rendered: raw frame, raw PCM and the `.json` record (no JPEG/FLAC yet)."""

    key: str
    rgb: np.ndarray
    pcm: np.ndarray
    meta: dict[str, Any]


def _row_dict(row: Any) -> Mapping[str, Any]:
    """Accept an annotation row (dict) or a plan row carrying one in `extra`."""
    if isinstance(row, Mapping):
        return row
    extra = getattr(row, "extra", None)
    if isinstance(extra, Mapping) and "frame_index" in extra:
        return {**extra, "key": row.key}
    raise TypeError(f"expected a synthetic annotation row, got {type(row).__name__}")


LABELLED_SALT = "semisup-synthetic|"


@functools.lru_cache(maxsize=None)
def labelled_keys(size: str) -> frozenset[str]:
    """The labelled train subset of a synthetic size (baselines spec §3.7, avsl-bench choice): the n // 10 train
    keys with the smallest sha256(`"semisup-synthetic|" + key`) (400 of `synthetic`, 25 of `synthetic-tiny`)."""
    from ..benchmarks.synthetic import sample_key, split_size

    keys = [sample_key("train", i) for i in range(split_size(size, "train"))]
    ranked = sorted(keys, key=lambda k: sha256_bytes((LABELLED_SALT + k).encode("utf-8")))
    return frozenset(ranked[: len(keys) // 10])


def render_sample(row: Any) -> RenderedSample:
    """Render one row of `synthetic_annotations` (positive, silent or off-screen negative)."""
    r = _row_dict(row)
    scene = scene_params(r["source_split"], r["frame_index"], r["seed"])
    rgb = render_rgb(scene)
    audio_scene = scene if r["audio_index"] == r["frame_index"] else scene_params(
        r["source_split"], r["audio_index"], r["seed"]
    )
    pcm = render_audio(audio_scene, silent=r["negative_type"] == SILENT)
    meta = {
        "key": r["key"], "benchmark": r["benchmark"], "split": r["split"], "protocol": r["protocol"],
        "video_id": r["video_id"], "audio_id": r["audio_id"],
        "source": {"kind": "synthetic", "ytid": None, "start": None, "seed": r["seed"], "split": r["source_split"],
                   "frame_index": r["frame_index"], "audio_index": r["audio_index"]},
        "class": r["class"], "class_id": r["class_id"], "audio_class": r["audio_class"],
        "audio_class_id": r["audio_class_id"], "frame_classes": list(r["frame_classes"]),
        "label": r["label"], "negative": r["negative"], "negative_type": r["negative_type"],
        "boxes": [list(b) for b in r["boxes"]], "box_group": None, "gt_rule": r["gt_rule"], "defects": [],
        "gt_empty": None if r["negative"] else False, "frame_boxes": None if r["frame_boxes"] is None else [list(b) for b in r["frame_boxes"]],
        "frame": {"t": FRAME_TIME, "width": WIDTH, "height": HEIGHT, "sha256": sha256_bytes(rgb.tobytes()),
                  "sha256_of": "raw RGB uint8 array, 192x256x3, C order"},
        "audio": {"window": [0.0, float(CLIP_SECONDS)], "sample_rate": SAMPLE_RATE, "samples": int(pcm.size),
                  "sha256": sha256_bytes(pcm.astype("<i2").tobytes()), "sha256_of": "raw PCM, int16 little-endian",
                  "silent": r["negative_type"] == SILENT},
        "scene": scene.to_json(),
        "audio_params": _jsonable_audio(audio_scene),
    }  # fmt: skip
    if r["split"] == "train":  # semi-supervised methods read the boxes of labelled samples only
        meta["labelled"] = r["key"] in labelled_keys(r["benchmark"])
    return RenderedSample(key=r["key"], rgb=rgb, pcm=pcm, meta=meta)


def _jsonable_audio(scene: SceneParams) -> dict[str, Any]:
    return {"source_key": scene.key, **scene.to_json()["audio"]}


def plan_row(row: Mapping[str, Any]):
    """The `plan.PlanRow` of an annotation row (source kind `synthetic`; the row rides along in `extra`,
    which `render_sample`/`sample_blobs` accept directly)."""
    from .plan import PlanRow

    return PlanRow(
        key=row["key"], video_id=row["video_id"], audio_id=row["audio_id"], benchmark=row["benchmark"],
        split=row["split"], protocol=row["protocol"], label=row["label"], negative=row["negative"],
        negative_type=row["negative_type"], class_name=row["class"], audio_class=row["audio_class"],
        boxes=tuple(tuple(b) for b in row["boxes"]), source_kind="synthetic", extra=dict(row),
    )


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """Baseline JPEG, Pillow quality 95, 4:2:0 chroma (Pillow's default, pinned), no EXIF or other metadata."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0")
    return buf.getvalue()


def _blobs(sample: RenderedSample, flac: bytes):
    from .shards import SampleBlobs

    return SampleBlobs(key=sample.key, jpg=encode_jpeg(sample.rgb), flac=flac, meta=sample.meta)


FLAC_ENCODERS = ("pyav", "ffmpeg", "soundfile")


def sample_blobs(row: Any, *, exe: str | None = None, flac_encoder: str = "pyav"):
    """Render one row and encode it: a `shards.SampleBlobs` (JPEG by Pillow; FLAC by libavcodec in-process
    (`"pyav"`, the §4 bytes), one ffmpeg process (`"ffmpeg"`) or libsndfile (`"soundfile"`))."""
    sample = render_sample(row)
    return _blobs(sample, _encode_flacs([sample.pcm], exe, flac_encoder, batch=False)[0])


def sample_blobs_batch(rows: Sequence[Any], *, exe: str | None = None, flac_encoder: str = "pyav") -> list:
    """`sample_blobs` for many rows; with ffmpeg, one process encodes all their FLACs (byte-identical to
    one process per clip, about a third of the CPU time)."""
    samples = [render_sample(row) for row in rows]
    flacs = _encode_flacs([s.pcm for s in samples], exe, flac_encoder, batch=True)
    return [_blobs(s, f) for s, f in zip(samples, flacs)]


def _encode_flacs(pcms: list[np.ndarray], exe: str | None, flac_encoder: str, *, batch: bool) -> list[bytes]:
    if flac_encoder == "pyav":  # libavcodec's FLAC encoder in-process (the §4 command line's bytes); no PyAV: ffmpeg
        from . import decode

        if decode.available():
            return [decode.encode_flac(p, SAMPLE_RATE) for p in pcms]
        flac_encoder = "ffmpeg"
    if flac_encoder == "ffmpeg":  # the ffmpeg binary (`exe`): one process per batch, or per clip
        if batch:
            return encode_flac_batch(pcms, SAMPLE_RATE, exe)
        from .ffmpeg import encode_flac

        return [encode_flac(p, SAMPLE_RATE, exe) for p in pcms]
    if flac_encoder == "soundfile":
        return [encode_flac_soundfile(p, SAMPLE_RATE) for p in pcms]
    raise ValueError(f"flac_encoder must be one of {FLAC_ENCODERS}, got {flac_encoder!r}")


def encode_flac_soundfile(pcm: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC by libsndfile/libFLAC (deterministic per libFLAC build; NOT the §4 ffmpeg path: its
    bytes differ from ffmpeg's, the decoded PCM is identical). About 4× cheaper than ffmpeg here."""
    import soundfile

    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1 or pcm.size == 0:
        raise ValueError("pcm must be a non-empty 1-D int16 numpy array")
    buf = io.BytesIO()
    soundfile.write(buf, pcm, int(sample_rate), format="FLAC", subtype="PCM_16")
    return buf.getvalue()


BATCH_CLIPS = 64  # clips per ffmpeg run in encode_flac_batch (bounds argv length and thread count)


def encode_flac_batch(
    pcms: Sequence[np.ndarray], sample_rate: int, exe: str | None = None, *, timeout: float = 300.0
) -> list[bytes]:
    """Encode mono int16 clips with one ffmpeg run per 64; byte-identical to `ffmpeg.encode_flac` per clip.

    Each clip is written to a raw s16le file and becomes its own input, mapped to its own FLAC output with
    the options of `encode_flac`: the same per-clip pipeline, one process start for many clips.
    """
    for p in pcms:
        if not isinstance(p, np.ndarray) or p.dtype != np.int16 or p.ndim != 1 or p.size == 0:
            raise ValueError("every clip must be a non-empty 1-D int16 numpy array")
    out: list[bytes] = []
    for start in range(0, len(pcms), BATCH_CLIPS):
        out += _encode_flac_run(pcms[start : start + BATCH_CLIPS], sample_rate, exe, timeout)
    return out


def _encode_flac_run(pcms: Sequence[np.ndarray], sample_rate: int, exe: str | None, timeout: float) -> list[bytes]:
    import tempfile
    from pathlib import Path

    from .ffmpeg import BASE_ARGS, BITEXACT_ARGS, FLAC_ARGS, FfmpegError, find_ffmpeg, run_ffmpeg

    exe = exe or find_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="avsl-flac-batch-") as tmp:
        argv = [exe, *BASE_ARGS, "-loglevel", "error", "-threads", "1"]
        for i, pcm in enumerate(pcms):
            raw = Path(tmp) / f"{i:03d}.raw"
            raw.write_bytes(pcm.astype("<i2", copy=False).tobytes())
            argv += ["-f", "s16le", "-ar", str(int(sample_rate)), "-ac", "1", "-i", str(raw)]
        outs = [Path(tmp) / f"{i:03d}.flac" for i in range(len(pcms))]
        for i, flac in enumerate(outs):
            argv += ["-map", f"{i}:a:0", "-threads", "1", *FLAC_ARGS, *BITEXACT_ARGS, "-f", "flac", "-y", str(flac)]
        run = run_ffmpeg(argv, timeout=timeout)
        if run.returncode != 0 or not all(o.is_file() for o in outs):
            raise FfmpegError(f"batch FLAC encoding failed: {run.last_line}")
        return [o.read_bytes() for o in outs]


# ----------------------------------------------------------------------------------------- split check


def meta_hashes(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(raw RGB sha256, PCM sha256) recorded in a sample's `.json`."""
    return meta["frame"]["sha256"], meta["audio"]["sha256"]


def assert_disjoint_splits(hashes: Mapping[str, Iterable[str]], *, reference: str = "train") -> None:
    """Raise SplitLeakError if any hash of a split other than `reference` occurs in `reference`.

    `hashes` maps split name → RGB and PCM sha256 values of its samples (e.g. via `meta_hashes`), such as
    `{"train": [...], "val": [...], "val-neg": [...], "test": [...], "test-neg": [...]}`.
    """
    if reference not in hashes:
        raise ValueError(f"no {reference!r} hashes given (have {sorted(hashes)})")
    seen = set(hashes[reference])
    for split, values in hashes.items():
        if split == reference:
            continue
        shared = sorted(seen.intersection(values))
        if shared:
            raise SplitLeakError(
                f"{len(shared)} frame/audio hash(es) of split {split!r} also occur in {reference!r}, e.g. {shared[0]}"
            )
