"""The synthetic benchmark's scenes and annotations (data spec §10, `synthetic@1`).

Everything here is pure numpy and cheap: the scorer regenerates a split's ground truth from the seed
without rendering a pixel. Rendering (RGB, PCM, JPEG, FLAC) lives in `avsl_bench.data.synthetic` and
reads only the `SceneParams` produced here.

Randomness. Sample `i` of split `k` (train 0, val 1, test 2) draws every parameter from
`numpy.random.Generator(PCG64(SeedSequence([seed, k, i])))`, in this order:

1. object count `n = 2 + integers(0, 2)`; classes `permutation(8)[:n]` (the first one sounds);
2. `u = random(20)`: pitch `-1 + 2 u0` semitones, peak `0.3 + 0.4 u1`, SNR `10 + 10 u2` dB, grating count
   `2 + floor(2 u3)`; grating g ∈ {0, 1, 2} (only the first count are used) from `u[4+4g : 8+4g]`:
   cycles per frame width `2 + 10 u`, orientation `pi u`, phase `2 pi u`, amplitude `10 + 20 u`;
   grey level `90 + 75 u16`; tint `-12 + 24 u[17:20]`;
3. `integers(0, 2**63, size=2)`: image noise seed, audio noise seed;
4. `integers(-15, 16, size=(3, 3))`: colour jitter of the 3 object slots; `random(3)`: their depths;
5. placement (variable length, hence last). Side fractions are `0.3 + 0.5 random(2)` (width, height),
   sides `floor(f · (W, H) + 0.5)` pixels. The sounding object then draws its position
   `integers(0, [W - w + 1, H - h + 1])`. Each distractor draws its size once, then 100 candidate
   positions at once (`integers(0, W - w + 1, size=100)`, then the same for y) and takes the first whose
   box has IoU ≤ 0.3 with every placed box. If none fits, the second distractor is dropped; the first
   one (a scene has at least two objects) draws a new size and 100 new positions until one fits.
   Drawing the size once per distractor (not once per try) keeps placed distractors about as large as
   the sounding object (which is placed unconditionally, so ≈ 62 % of GT boxes cover ≥ 25 % of the
   frame), so size does not give the sounding object away.

Draw order = objects sorted by their depth draw (back to front). Pixel noise and audio noise come from
`PCG64(<drawn seed>)` generators, so `SceneParams` alone determines the rendered bytes.

Negatives (val/test): every positive frame is reused once. Frames are ranked with §6.3's
`rank("frame", key)`; the first `N // 2` become `offscreen` (audio of the first unused positive, in
`rank("audio", key)` order, whose class is absent from the frame; else the least used such audio,
ties in audio order), the remaining `N - N // 2` become `silent` (the frame's own background noise,
without the class sound). Keys: `<video>__neg__<audio>` for off-screen, `<video>__neg__silent` for
silent negatives (whose `audio_id` is the video's own key and `audio_class` None).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GENERATOR_VERSION", "WIDTH", "HEIGHT", "SAMPLE_RATE", "CLIP_SECONDS", "CLIP_SAMPLES", "CLASSES", "SIZES",
    "SPLIT_STREAM", "SyntheticClass", "ObjectParams", "GratingParams", "AudioParams", "SceneParams",
    "scene_params", "sample_key", "split_size", "object_mask", "mask_box", "normalize_box", "box_iou", "rank",
    "synthetic_annotations",
]

GENERATOR_VERSION = 1
WIDTH, HEIGHT = 256, 192
SAMPLE_RATE = 16_000
CLIP_SECONDS = 3
CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS
FRAME_TIME = 1.5  # the still frame stands for the middle of the 3 s clip

SIDE_RANGE = (0.3, 0.8)
MAX_IOU = 0.3
PLACEMENT_TRIES = 100
MAX_OBJECTS = 3
COLOUR_JITTER = 15
IMAGE_NOISE_SIGMA = 8.0
FADE_SECONDS = 0.010
SILENT = "silent"
NEG_SEP = "__neg__"


@dataclass(frozen=True)
class SyntheticClass:
    """One of the 8 classes: a shape with a colour that makes one kind of sound."""

    index: int
    name: str
    shape: str
    colour: str
    rgb: tuple[int, int, int]  # base colour; every channel stays within [15, 240] so ±15 jitter never clips
    sound: str


CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass(0, "red_circle", "circle", "red", (230, 30, 30), "sine 440 Hz"),
    SyntheticClass(1, "green_square", "square", "green", (30, 190, 40), "band-limited square 220 Hz"),
    SyntheticClass(2, "blue_triangle", "triangle", "blue", (30, 60, 230), "band-limited sawtooth 330 Hz"),
    SyntheticClass(3, "yellow_star", "star", "yellow", (235, 215, 25), "exponential chirp 400→1600 Hz"),
    SyntheticClass(4, "magenta_ring", "ring", "magenta", (220, 30, 220), "linear chirp 2000→500 Hz"),
    SyntheticClass(5, "cyan_plus", "plus", "cyan", (25, 210, 220), "660 Hz tone gated on/off at 4 Hz"),
    SyntheticClass(6, "orange_diamond", "diamond", "orange", (240, 140, 20), "500+750 Hz dyad"),
    SyntheticClass(7, "white_hexagon", "hexagon", "white", (240, 240, 240), "2–4 kHz band noise, 3 bursts/s"),
)

SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
SIZES: dict[str, dict[str, int]] = {
    "synthetic": {"train": 4000, "val": 500, "test": 1000},
    "synthetic-tiny": {"train": 256, "val": 64, "test": 64},
}
NEGATIVE_SPLITS = ("val", "test")  # each has as many negatives as positives


@dataclass(frozen=True)
class ObjectParams:
    """One object. `box` = placement box, inclusive pixel coordinates (xmin, ymin, xmax, ymax)."""

    class_id: int
    box: tuple[int, int, int, int]
    side_fractions: tuple[float, float]
    colour: tuple[int, int, int]
    colour_jitter: tuple[int, int, int]
    depth: float
    sounding: bool


@dataclass(frozen=True)
class GratingParams:
    """A sinusoidal grating: `amplitude * sin(2 pi cycles (x cos θ + y sin θ) / W + phase)`."""

    cycles: float
    orientation: float
    phase: float
    amplitude: float


@dataclass(frozen=True)
class AudioParams:
    """The sounding object's clip: class sound × pitch factor, scaled to `peak`, plus pink noise."""

    class_id: int
    pitch_semitones: float
    pitch_factor: float
    peak: float
    snr_db: float
    fade_seconds: float
    noise_seed: int


@dataclass(frozen=True)
class SceneParams:
    """Everything needed to render sample `index` of `split` (objects[0] is the sounding one)."""

    version: int
    seed: int
    split: str
    index: int
    key: str
    objects: tuple[ObjectParams, ...]
    draw_order: tuple[int, ...]  # indices into `objects`, back to front
    dropped_distractors: int
    placement_rounds: int  # size draws spent on the mandatory first distractor (≥ 1)
    background_level: float
    tint: tuple[float, float, float]
    gratings: tuple[GratingParams, ...]
    image_noise_sigma: float
    image_noise_seed: int
    audio: AudioParams

    @property
    def sounding(self) -> ObjectParams:
        return self.objects[0]

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(o.class_id for o in self.objects)

    def to_json(self) -> dict:
        """Plain JSON-able dict (tuples become lists); recorded in each sample's `.json`."""
        return _jsonable(self)


def _jsonable(value):
    """Dataclasses → dicts (field order), tuples → lists, recursively (a fast, copy-free `asdict`)."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def sample_key(split: str, index: int) -> str:
    """`synthetic_<split>_<i:06d>` (the key of a positive)."""
    return f"synthetic_{split}_{index:06d}"


def split_size(size: str, split: str) -> int:
    """Number of positives of `split` in benchmark size `size` (negatives: the same number, val/test)."""
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; known: {', '.join(SIZES)}")
    if split not in SIZES[size]:
        raise ValueError(f"unknown synthetic split {split!r}; known: {', '.join(SPLIT_STREAM)}")
    return SIZES[size][split]


# ---------------------------------------------------------------------------------------------- shapes


def _star_halfplanes() -> np.ndarray:
    """The filled regular 5-pointed star (point up, v down), stretched to fill the unit box, as 5
    half-planes `A u + B v + C >= 0` (one per line through two outer vertices, centre side positive).
    A point lies in the star iff it violates at most one of them: the centre pentagon violates none,
    each arm exactly the line across its base, every point outside the star at least two."""
    angles = -math.pi / 2 + np.arange(5) * 2 * math.pi / 5
    outer = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    inner = math.sin(math.radians(18)) / math.sin(math.radians(126))  # inner/outer radius, ≈ 0.382
    inner_angles = angles + math.pi / 5
    lo = np.minimum(outer.min(axis=0), (inner * np.stack([np.cos(inner_angles), np.sin(inner_angles)], 1)).min(axis=0))
    hi = np.maximum(outer.max(axis=0), (inner * np.stack([np.cos(inner_angles), np.sin(inner_angles)], 1)).max(axis=0))
    scale = hi - lo
    rows = []
    for i in range(5):
        (ax, ay), (bx, by) = outer[i], outer[(i + 2) % 5]
        ex, ey = bx - ax, by - ay
        # f(x, y) = ex (y - ay) - ey (x - ax), with x = lo_x + u scale_x, y = lo_y + v scale_y
        coef = np.array([-ey * scale[0], ex * scale[1], ex * (lo[1] - ay) - ey * (lo[0] - ax)])
        sign = 1.0 if ex * (0.0 - ay) - ey * (0.0 - ax) > 0 else -1.0
        rows.append(sign * coef)
    return np.array(rows)


_STAR = _star_halfplanes()
RING_INNER = 0.55  # inner radius of the ring, relative to the outer one
PLUS_BAR = 1.0 / 3.0  # bar thickness of the plus, relative to the box side


def _star_inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    violated = sum((a * u + b * v + c < 0).astype(np.int8) for a, b, c in _STAR)
    return violated <= 1


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether unit-box points (u right, v down, broadcastable arrays) lie in `shape`."""
    cu, cv = np.abs(2 * u - 1), np.abs(2 * v - 1)  # 0 at the centre, 1 at the edges
    if shape == "circle":
        return cu**2 + cv**2 <= 1.0
    if shape == "square":
        return (cu <= 1.0) & (cv <= 1.0)
    if shape == "triangle":
        return (cu <= v) & (v <= 1.0)
    if shape == "star":
        return _star_inside(u, v)
    if shape == "ring":
        r2 = cu**2 + cv**2
        return (r2 <= 1.0) & (r2 > RING_INNER**2)
    if shape == "plus":
        return ((cu <= PLUS_BAR) & (cv <= 1.0)) | ((cv <= PLUS_BAR) & (cu <= 1.0))
    if shape == "diamond":
        return cu + cv <= 1.0
    if shape == "hexagon":
        return (cu + 0.5 * cv <= 1.0) & (cv <= 1.0)
    raise ValueError(f"unknown shape {shape!r}")


def _centres(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def object_mask(shape: str, width: int, height: int) -> np.ndarray:
    """Boolean mask (height × width) of `shape` inscribed in a `width` × `height` pixel box.

    Pixel (row j, column i) is on iff its centre `((i + 0.5) / width, (j + 0.5) / height)` lies in the
    shape, given in unit-box coordinates (u right, v down): no anti-aliasing. Geometry: circle = the
    inscribed ellipse; square = the whole box; triangle = apex top-centre, base = bottom edge;
    star = regular 5-pointed star, point up, stretched to fill the box; ring = inscribed ellipse minus
    the concentric one at 0.55 of its radii; plus = two bars 1/3 of the sides thick; diamond = the
    rhombus through the edge midpoints; hexagon = flat top and bottom edges spanning u ∈ [0.25, 0.75],
    left/right vertices at mid-height.
    """
    mask = _inside(shape, _centres(width)[None, :], _centres(height)[:, None])
    return np.broadcast_to(mask, (height, width)).copy()


def mask_box(obj: ObjectParams) -> tuple[int, int, int, int]:
    """Inclusive pixel box (xmin, ymin, xmax, ymax) of the object's unoccluded mask."""
    x0, y0, x1, y1 = obj.box
    mask = object_mask(CLASSES[obj.class_id].shape, x1 - x0 + 1, y1 - y0 + 1)
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1]))


def normalize_box(box: tuple[int, int, int, int]) -> list[float]:
    """Inclusive pixel box → `[xmin, ymin, xmax + 1, ymax + 1] / [W, H, W, H]`."""
    x0, y0, x1, y1 = box
    return [x0 / WIDTH, y0 / HEIGHT, (x1 + 1) / WIDTH, (y1 + 1) / HEIGHT]


# ------------------------------------------------------------------------------------------- placement


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two inclusive pixel boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union


def _draw_size(rng: np.random.Generator) -> tuple[tuple[float, float], int, int]:
    fw, fh = (float(f) for f in SIDE_RANGE[0] + (SIDE_RANGE[1] - SIDE_RANGE[0]) * rng.random(2))
    return (fw, fh), int(math.floor(fw * WIDTH + 0.5)), int(math.floor(fh * HEIGHT + 0.5))


def _place_distractor(rng: np.random.Generator, placed: list) -> tuple | None:
    fractions, w, h = _draw_size(rng)
    xs = rng.integers(0, WIDTH - w + 1, size=PLACEMENT_TRIES).tolist()
    ys = rng.integers(0, HEIGHT - h + 1, size=PLACEMENT_TRIES).tolist()
    for x, y in zip(xs, ys):
        box = (x, y, x + w - 1, y + h - 1)
        if all(box_iou(box, other) <= MAX_IOU for other in placed):
            return fractions, box
    return None


_ROUND_LIMIT = 1000  # the first distractor always fits somewhere; this only guards against a bug


def _rng(split: str, index: int, seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SPLIT_STREAM[split], index])))


def scene_params(split: str, index: int, seed: int = 0) -> SceneParams:
    """The parameters of sample `index` of `split` ('train' | 'val' | 'test'); see the module docstring."""
    if split not in SPLIT_STREAM:
        raise ValueError(f"unknown synthetic split {split!r}; known: {', '.join(SPLIT_STREAM)}")
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    rng = _rng(split, index, seed)
    n_objects = 2 + int(rng.integers(0, 2))
    classes = [int(c) for c in rng.permutation(len(CLASSES))[:n_objects]]
    u = [float(x) for x in rng.random(20)]
    image_noise_seed, audio_noise_seed = (int(x) for x in rng.integers(0, 2**63, size=2))
    jitters = [tuple(int(j) for j in row) for row in rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=(3, 3))]
    depths = [float(d) for d in rng.random(MAX_OBJECTS)]

    semitones = -1.0 + 2.0 * u[0]
    audio = AudioParams(
        class_id=classes[0], pitch_semitones=semitones, pitch_factor=2.0 ** (semitones / 12.0),
        peak=0.3 + 0.4 * u[1], snr_db=10.0 + 10.0 * u[2], fade_seconds=FADE_SECONDS, noise_seed=audio_noise_seed,
    )
    n_gratings = 2 + int(2 * u[3])
    gratings = tuple(
        GratingParams(
            cycles=2.0 + 10.0 * u[4 + 4 * g], orientation=math.pi * u[5 + 4 * g],
            phase=2 * math.pi * u[6 + 4 * g], amplitude=10.0 + 20.0 * u[7 + 4 * g],
        )
        for g in range(n_gratings)
    )
    level = 90.0 + 75.0 * u[16]
    tint = tuple(-12.0 + 24.0 * t for t in u[17:20])

    fractions, w, h = _draw_size(rng)
    x0, y0 = (int(c) for c in rng.integers(0, [WIDTH - w + 1, HEIGHT - h + 1]))
    placed: list[tuple[int, int, int, int]] = [(x0, y0, x0 + w - 1, y0 + h - 1)]
    all_fractions = [fractions]
    kept = [0]
    dropped = rounds = 0
    for slot in range(1, n_objects):
        got = _place_distractor(rng, placed)
        rounds += slot == 1
        while got is None and slot == 1:  # a scene keeps at least one distractor
            if rounds >= _ROUND_LIMIT:
                raise RuntimeError(f"cannot place a distractor in {sample_key(split, index)} (seed {seed})")
            got = _place_distractor(rng, placed)
            rounds += 1
        if got is None:
            dropped += 1
            continue
        all_fractions.append(got[0])
        placed.append(got[1])
        kept.append(slot)

    objects = []
    for slot, box, frac in zip(kept, placed, all_fractions):
        cls = CLASSES[classes[slot]]
        jit = jitters[slot]
        objects.append(ObjectParams(
            class_id=cls.index, box=box, side_fractions=frac,
            colour=tuple(min(255, max(0, c + j)) for c, j in zip(cls.rgb, jit)), colour_jitter=jit,
            depth=depths[slot], sounding=slot == 0,
        ))
    draw_order = tuple(sorted(range(len(objects)), key=lambda k: (objects[k].depth, k)))
    return SceneParams(
        version=GENERATOR_VERSION, seed=seed, split=split, index=index, key=sample_key(split, index),
        objects=tuple(objects), draw_order=draw_order, dropped_distractors=dropped, placement_rounds=rounds,
        background_level=level, tint=tint, gratings=gratings, image_noise_sigma=IMAGE_NOISE_SIGMA,
        image_noise_seed=image_noise_seed, audio=audio,
    )


# ----------------------------------------------------------------------------------------- annotations


def rank(seed: int, tag: str, x: str) -> int:
    """§6.3 hash rank: first 8 bytes (big-endian) of `sha256(f"{seed}|{tag}|{x}")`."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{tag}|{x}".encode()).digest()[:8], "big")


def _positive_row(size: str, params: SceneParams) -> dict:
    names = [CLASSES[c].name for c in params.class_ids]
    return {
        "key": params.key, "benchmark": size, "split": params.split, "source_split": params.split, "seed": params.seed,
        "protocol": f"{size}@{GENERATOR_VERSION}", "frame_index": params.index, "audio_index": params.index,
        "video_id": params.key, "audio_id": params.key,
        "class": names[0], "class_id": params.class_ids[0], "audio_class": names[0],
        "audio_class_id": params.class_ids[0], "label": "sounding", "negative": False, "negative_type": None,
        "boxes": [normalize_box(mask_box(params.sounding))], "frame_boxes": None,
        "frame_classes": names, "frame_class_ids": list(params.class_ids), "gt_rule": "synthetic",
    }


def _negative_row(size: str, frame: dict, audio: dict | None) -> dict:
    row = dict(frame)
    row.update({
        "key": f"{frame['key']}{NEG_SEP}{audio['key'] if audio else SILENT}",
        "split": f"{frame['split']}-neg", "protocol": f"{size}-ext@{GENERATOR_VERSION}",
        # a silent clip is its frame scene's own background noise: audio_id = video_id, no audio class
        "audio_index": (audio or frame)["frame_index"], "audio_id": (audio or frame)["key"],
        "audio_class": audio["class"] if audio else None, "audio_class_id": audio["class_id"] if audio else None,
        "label": "non-sounding", "negative": True, "negative_type": "offscreen" if audio else SILENT,
        "boxes": [], "frame_boxes": [list(b) for b in frame["boxes"]], "frame_classes": list(frame["frame_classes"]),
        "frame_class_ids": list(frame["frame_class_ids"]),
    })
    return row


def _negatives(size: str, positives: list[dict], seed: int) -> list[dict]:
    """Pair every positive frame once: the first N // 2 by frame rank off-screen, the rest silent."""
    frames = sorted(positives, key=lambda r: rank(seed, "frame", r["key"]))
    audio_order = sorted(positives, key=lambda r: rank(seed, "audio", r["key"]))
    n_offscreen = len(frames) // 2
    uses = [0] * len(audio_order)
    unused = list(range(len(audio_order)))  # positions in audio_order, in order
    pairs: dict[str, dict | None] = {}
    for f in frames[:n_offscreen]:
        present = set(f["frame_class_ids"])
        pick = next((j for j in unused if audio_order[j]["class_id"] not in present), None)
        if pick is None:
            eligible = [j for j in range(len(audio_order)) if audio_order[j]["class_id"] not in present]
            if not eligible:
                raise RuntimeError(f"no off-screen audio for {f['key']}: every class of the split is in the frame")
            pick = min(eligible, key=lambda j: (uses[j], j))
        else:
            unused.remove(pick)
        uses[pick] += 1
        pairs[f["key"]] = audio_order[pick]
    for f in frames[n_offscreen:]:
        pairs[f["key"]] = None
    return [_negative_row(size, f, pairs[f["key"]]) for f in positives]


def synthetic_annotations(size: str, split: str, seed: int = 0, *, negatives: bool = False) -> list[dict]:
    """Annotation rows of one split: positives in index order, then (val/test, if asked) the negatives
    in the order of their frames. Nothing is rendered.

    Row fields: `key`; `benchmark` (= size); `split` (`val`, or `val-neg` for negatives: the shard
    directory); `source_split` and `seed` (where the scenes come from); `protocol`; `frame_index` /
    `audio_index` (scene indices of the frame and of the audio) and `video_id` / `audio_id` (their
    positive keys; a silent negative's audio is its frame scene's noise, so audio = video there);
    `class` / `class_id` (the frame's sounding
    object); `audio_class` / `audio_class_id` (None for silent); `label` (sounding | non-sounding);
    `negative`; `negative_type` (None | 'silent' | 'offscreen'); `boxes` (normalised xyxy
    `[xmin, ymin, xmax + 1, ymax + 1] / [W, H, W, H]` of the sounding object's unoccluded mask; `[]`
    for negatives); `frame_boxes` (negatives: the frame's sounding-object box, for size bucketing;
    None for positives); `frame_classes` / `frame_class_ids` (every object in the frame, sounding one
    first); `gt_rule` ('synthetic', i.e. the VGG-SS rule).
    """
    n = split_size(size, split)
    if negatives and split not in NEGATIVE_SPLITS:
        raise ValueError(f"split {split!r} has no negatives (only {', '.join(NEGATIVE_SPLITS)} do)")
    rows = [_positive_row(size, scene_params(split, i, seed)) for i in range(n)]
    if negatives:
        rows += _negatives(size, rows, seed)
    return rows
