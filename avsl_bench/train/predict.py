"""Prediction archives from a trained run (and from the OGL prior alone).

`predict(run_dir, data, out)` loads `run_dir/final.pt` (a missing checkpoint is an error), computes the method's
grid map A for every sample of the given shard directories (positives and negatives), upsamples it to 224×224
(bicubic, align_corners=False, float32) and writes the fixed-range map Â = (τ·A + 1)/2 in the submission layout.
Explicit per-sample scores are written only if the method defines them (EZ-VSL and SLAVC do not; the scorer then
uses the top-quarter mean). `ogl` adds the OGL prior with the rule of the protocol (baselines spec §2.4).
When the method defines global embeddings (`AVModel.embeddings`: EZ-VSL, JSA), the archive also carries
``image_embeddings`` / ``audio_embeddings`` (float32, row-aligned with the ids) for `score --retrieval`; audio-control
archives (`audio_from`) carry none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import features
from ..errors import DataFileError, UsageError
from ..files import sha256_file, write_json_atomic
from ..models import AVModel, build_model
from ..models import maps as M
from ..models.encoders import IMAGENET_R18_FILE
from ..models.ogl import OGLPrior
from ..models.recipes import Recipe, parse_recipe
from ..provenance import tool_info
from .data import AVDataset, ShardIndex
from .distributed import resolve_device
from .loop import CHECKPOINT_FORMAT, RUN_SCHEMA

__all__ = ["load_run", "predict", "predict_ogl", "method_info", "OGL_MODES"]

OGL_MODES = ("classic", "extended")


def _read_run(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.is_file():
        raise DataFileError(f"{path}: no run.json (not a training run directory)")
    run = json.loads(path.read_text(encoding="utf-8"))
    if run.get("schema") != RUN_SCHEMA:
        raise DataFileError(f"{path}: unknown run schema {run.get('schema')!r}")
    return run


def load_run(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu", checkpoint: str = "final.pt"
             ) -> tuple[AVModel, Recipe, dict]:
    """(model in eval mode on `device`, recipe, run.json) of a training run; the checkpoint's sha256 must match."""
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    ckpt = run_dir / checkpoint
    if not ckpt.is_file():
        raise DataFileError(f"{ckpt}: checkpoint missing (refusing to predict with untrained weights)")
    if checkpoint == "final.pt" and sha256_file(ckpt) != run["checkpoint"]["sha256"]:
        raise DataFileError(f"{ckpt}: sha256 differs from run.json (checkpoint replaced or corrupt)")
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise DataFileError(f"{ckpt}: not an avsl-bench checkpoint")
    resolved = dict(payload["recipe"])
    recipe = parse_recipe({k: v for k, v in resolved.items() if k != "name"}, name=resolved["name"], source=str(ckpt))
    # the checkpoint holds every weight: skip loading ImageNet files (and their warning) at construction
    model_cfg = dataclasses.replace(recipe.model, visual_weights="")
    model = build_model(recipe.method, model_cfg, audio_in_bins=recipe.audio_in_bins)
    model.load_state_dict(payload["state_dict"])
    model.weights_info = run.get("weights", {})
    return model.to(device).eval(), recipe, run


def _ogl_mode(ogl: bool | str, index: ShardIndex) -> str | None:
    if ogl is False or ogl is None:
        return None
    if ogl is True:
        return "extended" if any(s.meta.get("negative") for s in index.samples) else "classic"
    if ogl not in OGL_MODES:
        raise UsageError(f"ogl must be False, True (auto), 'classic' or 'extended'; got {ogl!r}")
    return ogl


def _items(index: ShardIndex, audio_from: Mapping[str, str] | None) -> tuple[list[str], list]:
    keys = index.keys
    if audio_from is None:
        return keys, list(range(len(keys)))
    pos = {k: i for i, k in enumerate(keys)}
    missing = [k for k in list(audio_from) + list(audio_from.values()) if k not in pos]
    if missing:
        raise UsageError(f"audio_from names unknown sample {missing[0]!r}")
    frames = sorted(audio_from)
    return frames, [(pos[f], pos[audio_from[f]]) for f in frames]


def _loader(dataset, items, batch_size: int, workers: int) -> DataLoader:
    from .seeding import worker_init_fn

    return DataLoader(_ItemList(dataset, items),
                      batch_size=batch_size, shuffle=False, num_workers=workers,
                      worker_init_fn=worker_init_fn if workers else None)  # fmt: skip


class _ItemList(torch.utils.data.Dataset):
    def __init__(self, ds: AVDataset, items: list) -> None:
        self.ds, self.items = ds, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        return self.ds[self.items[k]]


def predict(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    ogl: bool | str = False,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 2,
    compressed: bool = False,
    audio_from: Mapping[str, str] | None = None,
    checkpoint: str = "final.pt",
) -> dict[str, Any]:
    """Write the prediction archive of a trained run for every sample of `data` (test + test-neg directories).

    `ogl`: False (AV map Â only), "classic" (minmax(0.4·minmax(A) + 0.6·minmax(O))), "extended"
    (0.9·Â + 0.1·O/2.5), or True = "extended" if the data hold negatives else "classic".
    `audio_from` (controls only): frame key → key of the sample whose audio is paired with it; the archive then
    holds the frame keys (and no embeddings). Returns the summary also written to `<out>.json`.
    """
    dev = resolve_device(device)
    model, recipe, run = load_run(run_dir, device=dev, checkpoint=checkpoint)
    index = ShardIndex.build(data)
    mode = _ogl_mode(ogl, index)
    prior = None
    if mode is not None:
        with warnings.catch_warnings(record=True) as wlist:
            warnings.simplefilter("always")
            prior = OGLPrior(recipe.inference.ogl_weights).to(dev)
        for w in wlist:
            warnings.warn(str(w.message), RuntimeWarning, stacklevel=2)
    dataset = AVDataset(index, recipe.input, mode="eval", ogl_image=prior is not None)
    ids, items = _items(index, audio_from)
    loader = _loader(dataset, items, batch_size or recipe.inference.batch_size, workers)
    collected: dict[str, list[np.ndarray]] | None = {"image": [], "audio": []} if audio_from is None else None

    def chunks() -> Iterator[np.ndarray]:
        nonlocal collected
        with torch.no_grad():
            for batch in loader:
                image = features.normalize_image(batch["image"].to(dev))
                grid, emb = model.localize_and_embed(image, batch["audio"].to(dev), embed=collected is not None)
                if collected is not None:
                    if emb is None:
                        collected = None  # the method defines no embeddings
                    else:
                        collected["image"].append(emb[0].float().cpu().numpy())
                        collected["audio"].append(emb[1].float().cpu().numpy())
                av = M.upsample(grid)
                av_fixed = M.fixed_range(av, model.tau) if model.map_range == "cosine" else av
                if prior is None:
                    result = av_fixed
                else:
                    o = M.upsample(prior(features.normalize_image(batch["ogl_image"].to(dev))))
                    result = M.combine_ogl_classic(av, o) if mode == "classic" else M.combine_ogl_extended(av_fixed, o)
                yield result.float().cpu().numpy()

    from ..scoring.submission import write_submission

    def embeddings() -> tuple[np.ndarray, np.ndarray] | None:
        if collected is None:
            return None
        return np.concatenate(collected["image"]), np.concatenate(collected["audio"])

    write_submission(out, ids, chunks(), scores=None, compressed=compressed, embeddings=embeddings)
    summary = {
        "run": str(run_dir),
        "method": run["method"],
        "recipe": run["recipe"]["name"],
        "seed": run["seed"],
        "checkpoint": {"file": checkpoint, "sha256": sha256_file(Path(run_dir) / checkpoint)},
        "checkpoint_selection": "final" if checkpoint == "final.pt" else "diagnostic",
        "data": [str(p) for p in index.sources],
        "samples": len(ids),
        "map": "fixed_range" if mode is None else f"ogl_{mode}",
        "ogl_weights": None if prior is None else prior.info.to_json(),
        "controls": None if audio_from is None else "audio_from",
        "scores": None,
        "embeddings": None if collected is None else {"dim": int(collected["audio"][0].shape[1]),
                                                      "image": "image_embeddings", "audio": "audio_embeddings"},
        "submission": {"file": Path(out).name, "sha256": sha256_file(out)},
        "tool": tool_info(),
    }  # fmt: skip
    write_json_atomic(Path(str(out) + ".json"), summary)
    return summary


def predict_ogl(
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    weights: str | None = IMAGENET_R18_FILE,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
    compressed: bool = False,
) -> dict[str, Any]:
    """The OGL baseline (§3.2): map O of a frozen ImageNet ResNet-18 for every sample; no training."""
    from ..models.recipes import InputConfig
    from ..scoring.submission import write_submission

    dev = resolve_device(device)
    prior = OGLPrior(weights).to(dev)
    index = ShardIndex.build(data)
    dataset = AVDataset(index, InputConfig(), mode="eval")
    loader = _loader(dataset, list(range(len(index))), batch_size, workers)

    def chunks() -> Iterator[np.ndarray]:
        with torch.no_grad():
            for batch in loader:
                yield M.upsample(prior(features.normalize_image(batch["image"].to(dev)))).cpu().numpy()

    write_submission(out, index.keys, chunks(), compressed=compressed)
    summary = {"method": "ogl", "data": [str(p) for p in index.sources], "samples": len(index),
               "ogl_weights": prior.info.to_json(), "submission": {"file": Path(out).name, "sha256": sha256_file(out)},
               "tool": tool_info()}  # fmt: skip
    write_json_atomic(Path(str(out) + ".json"), summary)
    return summary


def method_info(run_dir: str | os.PathLike, *, ogl: bool | str = False):
    """The scorer's `MethodInfo` for a run (training set, leakage flag, checkpoint sha256, selection = final)."""
    from ..scoring.score import MethodInfo

    run = _read_run(Path(run_dir))
    data = run["training_data"]
    name = run["method"] + ("+OGL" if ogl else "")
    return MethodInfo(
        name=name,
        training_set=",".join(data["benchmarks"]),
        training_set_sha256=data["keys_sha256"],
        training_set_leaky=data["leaky"],
        checkpoint_sha256=run["checkpoint"]["sha256"],
        checkpoint_selection="final",
        extra={"recipe": run["recipe"]["name"], "seed": run["seed"], "epochs": run["epochs"],
               "weights": run.get("weights"), "warnings": run.get("warnings", [])},
    )
