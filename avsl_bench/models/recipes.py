"""Training recipes as data: `baselines/<method>/<recipe>.toml` → a frozen, strictly validated `Recipe`.

Unknown keys, missing tables and wrong types are errors (the message names file and key). A recipe fixes
everything that changes a number: encoders and method knobs (`[model]`, the method's config class), inputs
(`[input]`), optimiser (`[optim]`), the fixed schedule (`[schedule]`: no early stopping, the final checkpoint is
the result), runtime (`[runtime]`) and inference options (`[inference]`). `Recipe.to_json()` is the resolved
recipe recorded in `run.json`.

    method = "ezvsl"
    version = 1
    title = "EZ-VSL on VGGSound-144k"
    train_set = "vggsound-144k"
    [model]   …   [input]   …   [optim]   …   [schedule]  epochs = 20   …
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "RecipeError", "InputConfig", "OptimConfig", "ScheduleConfig", "RuntimeConfig", "InferenceConfig", "Recipe",
    "baselines_dir", "recipe_path", "load_recipe", "parse_recipe", "list_recipes",
]

AUDIO_FRONTENDS = ("spectrogram", "pooled", "stft160")
AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw")
LR_DECAYS = ("constant", "cosine")


class RecipeError(DataFileError):
    """A recipe file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class InputConfig:
    """Inputs (§2.1): image sizes and training augmentation, audio window and spectrogram front-end."""

    image_size: int = 224  # evaluation squash and training crop size
    resize_short: int = 246  # training: short side before the random crop
    flip: float = 0.5
    audio_seconds: float = 3.0  # protocol window, centred on the clip centre
    audio_frontend: str = "spectrogram"  # spectrogram (1×257×200, §2.1) | pooled (F×T, CPU preset) | stft160 (JSA)
    freq_bins: int = 64  # pooled only
    time_frames: int = 100  # pooled only

    def __post_init__(self) -> None:
        if self.audio_frontend not in AUDIO_FRONTENDS:
            raise ValueError(f"audio_frontend must be one of {AUDIO_FRONTENDS}, got {self.audio_frontend!r}")
        if self.resize_short < self.image_size:
            raise ValueError(f"resize_short ({self.resize_short}) must be ≥ image_size ({self.image_size})")
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip must be a probability, got {self.flip}")


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {self.name!r}")


@dataclass(frozen=True)
class ScheduleConfig:
    """The fixed schedule: every epoch is trained, the final checkpoint is the result."""

    epochs: int
    batch_size: int = 128  # global batch, regardless of GPU count
    drop_last: bool = True
    save_every: int = 0  # >0: also keep epoch_XXX.pt every N epochs (diagnostics only)
    # Semi-supervised methods (§3.7): the first `warmup_epochs` epochs draw labelled samples only; afterwards every
    # global batch is `batch_size` samples of the unlabelled pool plus `labelled_batch_size` labelled ones (0: one
    # permutation of all samples, labelled ones mixed in). Both 0 for unsupervised methods (plain shuffle).
    warmup_epochs: int = 0
    labelled_batch_size: int = 0
    # Learning rate over the fixed schedule: "constant" (the papers' recipes) or "cosine" (half a cosine from
    # optim.lr at the first step to 0 after the last one, per step).
    lr_decay: str = "constant"
    # Weight averaging: 0 = off (the papers' recipes); m in (0, 1): an exponential moving average of the weights
    # (parameters and BatchNorm statistics, θ̄ ← m·θ̄ + (1 − m)·θ after every step, bias-corrected so that the
    # initial weights carry no share) is kept and every checkpoint, `final.pt` included, holds it instead of the
    # last step's weights. A regulariser of the fixed schedule.
    weight_ema: float = 0.0

    def __post_init__(self) -> None:
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"schedule.lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        if not 0.0 <= self.weight_ema < 1.0:
            raise ValueError(f"schedule.weight_ema must be in [0, 1), got {self.weight_ema}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be ≥ 1 and batch_size ≥ 2")
        if self.warmup_epochs < 0 or self.labelled_batch_size < 0:
            raise ValueError("warmup_epochs and labelled_batch_size must be ≥ 0")
        if not self.drop_last:
            raise ValueError("drop_last = false is not supported (contrastive losses need full batches)")


@dataclass(frozen=True)
class RuntimeConfig:
    amp: str = "none"  # none | bf16 | fp16 — applied on CUDA only
    workers: int = 4  # data-loader workers (per process)
    cache_decoded: bool = False  # decode every sample once and keep it in memory (small sets, CPU preset)
    channels_last: bool = True  # CUDA only

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")


@dataclass(frozen=True)
class InferenceConfig:
    ogl_weights: str = "resnet18-f37072fd.pth"
    batch_size: int = 64


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    version: int
    title: str
    train_set: str
    model: Any
    input: InputConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    source: str | None = None

    def to_json(self) -> dict:
        """The resolved recipe (every value, defaults included) for run.json."""
        out = _plain(dataclasses.asdict(self))
        out.pop("source")
        return out

    def with_epochs(self, epochs: int) -> "Recipe":
        """The recipe with another schedule length; a semi-supervised warm-up keeps its share of the schedule
        (rounded, at least 1 epoch, and leaving at least 1 unlabelled epoch when the schedule has 2 or more)."""
        epochs = int(epochs)
        warmup = self.schedule.warmup_epochs
        if warmup and epochs != self.schedule.epochs:
            warmup = max(1, min(round(warmup * epochs / self.schedule.epochs), epochs - 1 if epochs > 1 else 1))
        return dataclasses.replace(self, schedule=dataclasses.replace(self.schedule, epochs=epochs,
                                                                      warmup_epochs=warmup))

    @property
    def audio_in_bins(self) -> int:
        return self.input.freq_bins if self.input.audio_frontend == "pooled" else 257


# ------------------------------------------------------------------------------------------------ parse


def _plain(value: Any) -> Any:
    """Tuples → lists, recursively (the JSON/TOML form that `parse_recipe` reads back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected an array, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RecipeError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if typing.get_origin(hint) is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(value, args[0], where)
    raise RecipeError(f"{where}: unsupported field type {hint!r}")  # pragma: no cover


def _build(cls: type, table: Any, where: str):
    """A frozen dataclass from a TOML table: unknown keys, wrong types, missing required keys are errors."""
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in table.items()}
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # fmt: skip
    if missing:
        raise RecipeError(f"{where}: missing key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"{where}: {exc}") from None


_TOP = {"method", "version", "title", "train_set", "model", "input", "optim", "schedule", "runtime", "inference"}


def parse_recipe(raw: dict, *, name: str, source: str | None = None) -> Recipe:
    """Validate a parsed TOML document into a Recipe."""
    from . import get_method

    where = source or name
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise RecipeError(f"{where}: unknown top-level key(s) {', '.join(unknown)}")
    for key in ("method", "version", "title", "train_set", "model", "schedule"):
        if key not in raw:
            raise RecipeError(f"{where}: missing {key!r}")
    method = _convert(raw["method"], str, f"{where}: method")
    try:
        entry = get_method(method)
    except Exception as exc:  # UnknownNameError with suggestions
        raise RecipeError(f"{where}: {exc}") from None
    return Recipe(
        name=name,
        method=method,
        version=_convert(raw["version"], int, f"{where}: version"),
        title=_convert(raw["title"], str, f"{where}: title"),
        train_set=_convert(raw["train_set"], str, f"{where}: train_set"),
        model=_build(entry.config_cls, raw["model"], f"{where}: [model]"),
        input=_build(InputConfig, raw.get("input", {}), f"{where}: [input]"),
        optim=_build(OptimConfig, raw.get("optim", {}), f"{where}: [optim]"),
        schedule=_build(ScheduleConfig, raw["schedule"], f"{where}: [schedule]"),
        runtime=_build(RuntimeConfig, raw.get("runtime", {}), f"{where}: [runtime]"),
        inference=_build(InferenceConfig, raw.get("inference", {}), f"{where}: [inference]"),
        source=source,
    )


def baselines_dir() -> Path:
    """Where recipes live: `$AVSL_BENCH_BASELINES` or the repository's `baselines/`."""
    env = os.environ.get("AVSL_BENCH_BASELINES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "baselines"


def recipe_path(method: str, config: str | os.PathLike) -> Path:
    """`config` as a file path, else `baselines/<method>/<config>.toml`."""
    path = Path(config)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        return path
    candidate = baselines_dir() / method / f"{config}.toml"
    if not candidate.is_file():
        known = ", ".join(list_recipes(method)) or "none"
        raise RecipeError(f"no recipe {config!r} for method {method!r} (looked for {candidate}); known: {known}")
    return candidate


def list_recipes(method: str) -> list[str]:
    """Recipe names available for `method` under `baselines/<method>/`."""
    directory = baselines_dir() / method
    return sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []


def load_recipe(method: str, config: str | os.PathLike) -> Recipe:
    """Load and validate a recipe by name or path; its `method` must be `method`."""
    path = recipe_path(method, config)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: unreadable recipe: {exc}") from None
    recipe = parse_recipe(raw, name=path.stem, source=str(path))
    if recipe.method != method:
        raise RecipeError(f"{path}: recipe is for method {recipe.method!r}, not {method!r}")
    return recipe
